package docker

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// filters is the decoded `filters` query parameter: name → values. Docker
// clients send either {"name":{"v":true}} or the legacy {"name":["v"]}.
type filters map[string][]string

func parseFilters(r *http.Request) (filters, error) {
	raw := r.URL.Query().Get("filters")
	f := filters{}
	if raw == "" {
		return f, nil
	}
	var m map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &m); err == nil {
		for k, vs := range m {
			for v, ok := range vs {
				if ok {
					f[k] = append(f[k], v)
				}
			}
		}
		return f, nil
	}
	var legacy map[string][]string
	if err := json.Unmarshal([]byte(raw), &legacy); err != nil {
		return nil, badRequest("invalid filter: %v", err)
	}
	return legacy, nil
}

// only refuses, with dockerd's words, a filter not among names.
func (f filters) only(names ...string) error {
	for k := range f {
		if !slices.Contains(names, k) {
			return badRequest("invalid filter '%s'", k)
		}
	}
	return nil
}

// matchAny is true when the filter is absent or any of its values matches.
func (f filters) matchAny(name string, match func(string) bool) bool {
	vs, ok := f[name]
	if !ok {
		return true
	}
	for _, v := range vs {
		if match(v) {
			return true
		}
	}
	return false
}

// matchLabels checks every label filter ("key" or "key=value"); all must hold.
func (f filters) matchLabels(labels map[string]string) bool {
	for _, v := range f["label"] {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != want {
			return false
		}
	}
	for _, v := range f["label!"] {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if ok && (!hasValue || got == want) {
			return false
		}
	}
	return true
}

// untilOK applies the prune filter until=<timestamp|duration>.
func (f filters) untilOK(created time.Time) bool {
	for _, v := range f["until"] {
		t, ok := parseTimestamp(v)
		if ok && !created.Before(t) {
			return false
		}
	}
	return true
}

// parseTimestamp reads Docker's time arguments: unix seconds (with
// fraction), RFC3339, or a duration back from now ("10m").
func parseTimestamp(v string) (time.Time, bool) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), true
	}
	if sec, frac, ok := strings.Cut(v, "."); ok || sec != "" {
		if s, err := strconv.ParseInt(sec, 10, 64); err == nil {
			ns := int64(0)
			if ok {
				frac = (frac + "000000000")[:9]
				ns, _ = strconv.ParseInt(frac, 10, 64)
			}
			return time.Unix(s, ns), true
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func matchRegexp(pattern, s string) bool {
	re, err := regexp.Compile(pattern)
	return err == nil && re.MatchString(s)
}
