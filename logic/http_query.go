package logic

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// pushQuery is a push route's query string, scanned once: goim's
// operation, speed, type and room and imcloud's id (the first of each counts) and the
// repeated values of the route's list parameter (keys or mids), each of
// which may itself be comma-separated. It does what url.ParseQuery would
// for these names without building the whole map: the push routes read it
// on every request. A value is unescaped only when it carries an escape;
// a malformed escape is kept verbatim (and then refused as bad input).
type pushQuery struct {
	operation, speed, typ, room, id string
	list                            []string
}

func parsePushQuery(raw, listName string) pushQuery {
	var (
		q    pushQuery
		seen uint8
	)
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		k = unescapeQuery(k)
		var dst *string
		var bit uint8
		switch k {
		case "operation":
			dst, bit = &q.operation, 1
		case "speed":
			dst, bit = &q.speed, 2
		case "type":
			dst, bit = &q.typ, 4
		case "room":
			dst, bit = &q.room, 8
		case "id":
			dst, bit = &q.id, 16
		default:
			if listName != "" && k == listName {
				q.list = append(q.list, unescapeQuery(v))
			}
			continue
		}
		if seen&bit == 0 {
			seen |= bit
			*dst = unescapeQuery(v)
		}
	}
	return q
}

// unescapeQuery undoes a query component's escapes (%XX, + for space). A
// malformed escape is returned as given.
func unescapeQuery(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// splitList flattens repeated and comma-separated values, dropping empty
// items (a trailing comma).
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		if !strings.Contains(v, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
			continue
		}
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

var errNotInt = errors.New("not a list of integers")

// parseInts parses repeated and comma-separated decimal integers.
func parseInts(vals []string) ([]int64, error) {
	if len(vals) == 1 && !strings.Contains(vals[0], ",") {
		// One value, the common case of a push to one user.
		v := strings.TrimSpace(vals[0])
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, errNotInt
		}
		return []int64{n}, nil
	}
	items := splitList(vals)
	if len(items) == 0 {
		return nil, nil
	}
	out := make([]int64, len(items))
	for i, s := range items {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errNotInt
		}
		out[i] = n
	}
	return out, nil
}
