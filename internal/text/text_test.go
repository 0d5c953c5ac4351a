package text

import "testing"

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{
		"":                   true,
		"a b/c:1":            true,
		"é中文":                true,
		"a\r\nb":             false,
		"a\x00":              false,
		"tab\t":              false,
		"\u200b":             false, // zero width space: not printable
		string([]byte{0xff}): false,
	} {
		if got := Printable(s); got != want {
			t.Errorf("Printable(%q) = %v, want %v", s, got, want)
		}
	}
}
