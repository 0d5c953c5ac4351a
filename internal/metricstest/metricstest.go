// Package metricstest checks Prometheus expositions the way a scraper sees
// them: it parses the text format with prometheus/common's expfmt parser
// and asserts imcloud's conventions (typed families, counters ending in
// _total, HELP written for operators, units last) and that
// docs/metrics.md lists every family with its type. It is test support,
// like queuetest and routertest.
package metricstest

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Families are parsed metric families by name.
type Families map[string]*dto.MetricFamily

// Parse parses a text exposition.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	require.NoError(t, err, "the exposition parses")
	return fams
}

// Scrape GETs path from h, as Prometheus would, and parses the answer.
func Scrape(t testing.TB, h http.Handler, path string) Families {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, "%s: %s", path, rec.Body)
	return Parse(t, rec.Body)
}

// Gather registers cs on a pedantic registry (which checks that each
// collector sends only what it described), serves it and scrapes it.
func Gather(t testing.TB, cs ...prometheus.Collector) Families {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		require.NoError(t, reg.Register(c))
	}
	return Scrape(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}), "/metrics")
}

// unitWords may appear in a name only as its last word (before _total).
var unitWords = []string{"seconds", "bytes"}

// histogramUnits are the units a histogram's name may end in.
var histogramUnits = []string{"_seconds", "_bytes", "_connections", "_messages", "_records"}

// CheckConventions asserts imcloud's conventions on every family whose
// name starts with prefix.
func CheckConventions(t testing.TB, fams Families, prefix string) {
	t.Helper()
	n := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		n++
		typ := f.GetType()
		require.Contains(t, []dto.MetricType{dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM},
			typ, "%s is %v: every family is typed", name, typ)
		base := strings.TrimSuffix(name, "_total")
		if typ == dto.MetricType_COUNTER {
			require.NotEqual(t, base, name, "counter %s ends in _total", name)
		} else {
			require.Equal(t, base, name, "%s %s does not end in _total", typ, name)
		}
		for _, u := range unitWords {
			require.NotContains(t, base, "_"+u+"_", "%s: the unit comes last", name)
		}
		if typ == dto.MetricType_HISTOGRAM {
			require.True(t, hasSuffix(name, histogramUnits), "histogram %s ends in its unit (%v)", name, histogramUnits)
		}
		help := f.GetHelp()
		require.True(t, strings.Contains(help, " ") && strings.HasSuffix(help, "."),
			"%s: HELP is a sentence for operators, not a field name: %q", name, help)
	}
	require.NotZero(t, n, "families named %s*", prefix)
}

func hasSuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// docRow matches a table row of docs/metrics.md: | `name` | type | ...
var docRow = regexp.MustCompile("^\\| `([a-z_:]+)` \\| (counter|gauge|histogram) \\|")

// CheckDocumented asserts that the doc at path lists every family whose
// name starts with prefix, with its type, and lists no such family that
// fams lacks.
func CheckDocumented(t testing.TB, fams Families, path, prefix string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	documented := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if m := docRow.FindStringSubmatch(sc.Text()); m != nil {
			documented[m[1]] = m[2]
		}
	}
	for name, f := range fams {
		if strings.HasPrefix(name, prefix) {
			require.Equal(t, strings.ToLower(f.GetType().String()), documented[name], "%s: its row in %s", name, path)
		}
	}
	for name := range documented {
		if strings.HasPrefix(name, prefix) {
			require.Contains(t, fams, name, "%s lists %s, which is not exported", path, name)
		}
	}
}

// Filled returns a value of a Stats type with every number set to a value
// of its own (a duration to that many seconds, a histogram snapshot to that
// count), every map given one such entry and every string set, and which
// field got which value: a collector that exports every field shows each
// value as a sample value (or a histogram's count).
func Filled[S any]() (S, map[float64]string) {
	var s S
	f := filler{next: 1000, fields: map[float64]string{}}
	f.fill(reflect.ValueOf(&s).Elem(), reflect.TypeFor[S]().Name())
	return s, f.fields
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	histogramType = reflect.TypeFor[imcloud.HistogramSnapshot]()
)

type filler struct {
	next   float64
	fields map[float64]string
}

func (f *filler) take(path string) float64 {
	f.next++
	f.fields[f.next] = path
	return f.next
}

func (f *filler) fill(v reflect.Value, path string) {
	switch {
	case v.Type() == durationType:
		v.SetInt(int64(f.take(path) * float64(time.Second)))
	case v.Type() == histogramType:
		v.Set(reflect.ValueOf(imcloud.HistogramSnapshot{Bounds: []float64{1}, Cumulative: []uint64{0}, Count: uint64(f.take(path))}))
	case v.CanInt():
		v.SetInt(int64(f.take(path)))
	case v.CanUint():
		v.SetUint(uint64(f.take(path)))
	case v.CanFloat():
		v.SetFloat(f.take(path))
	case v.Kind() == reflect.String:
		v.SetString("x")
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if field := v.Type().Field(i); field.IsExported() {
				f.fill(v.Field(i), path+"."+field.Name)
			}
		}
	case v.Kind() == reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		if k.Kind() == reflect.String {
			k.SetString("k")
		}
		f.fill(e, path+"[k]")
		m.SetMapIndex(k, e)
		v.Set(m)
	}
}

// CheckValues asserts that every value in fields is the value of some
// sample in fams (a histogram counts by its sample count): the collector
// exports the field that held it.
func CheckValues(t testing.TB, fams Families, fields map[float64]string) {
	t.Helper()
	seen := map[float64]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			seen[m.GetCounter().GetValue()] = true
			seen[m.GetGauge().GetValue()] = true
			seen[float64(m.GetHistogram().GetSampleCount())] = true
		}
	}
	for v, field := range fields {
		require.True(t, seen[v], "no metric exports %s", field)
	}
}
