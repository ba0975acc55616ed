package cli

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-02T15:04:05Z":        time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02T15:04:05.5+01:00": time.Date(2026, 1, 2, 14, 4, 5, 5e8, time.UTC),
		"2026-01-02T15:04":            time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC),
		"2026-01-02 15:04:05":         time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02":                  time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"now":                         now,
		"90m":                         now.Add(-90 * time.Minute),
		"-6h":                         now.Add(-6 * time.Hour),
		"7d":                          now.Add(-7 * 24 * time.Hour),
		"1.5d":                        now.Add(-36 * time.Hour),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "5x", "-d"} {
		if _, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) succeeded", in)
		}
	}
}

func TestRateFlag(t *testing.T) {
	for in, want := range map[string]float64{"50": 50, "50/s": 50, "600/m": 10, "7200/h": 2, "0.5": 0.5} {
		var f rateFlag
		if err := f.Set(in); err != nil || f.perSecond != want {
			t.Errorf("rate %q = %v, %v; want %v", in, f.perSecond, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "fast", "5/d"} {
		var f rateFlag
		if f.Set(in) == nil {
			t.Errorf("rate %q accepted", in)
		}
	}
}
