// Package text holds the checks cloud and logic share on the strings a
// client or an application names: connection keys, rooms, platforms,
// kick reasons. They end up in the store, in logs and in the push API's
// answers, so both sides refuse the same ones.
package text

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Printable reports whether s is UTF-8 without control or other
// non-printing characters (strconv.IsPrint; the ASCII space is allowed).
func Printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) < 0
}
