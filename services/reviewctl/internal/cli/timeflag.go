package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// timeHelp describes the accepted time forms, for flag help texts.
const timeHelp = "RFC 3339 (2026-01-02T15:04:05Z), a UTC date or date-time (2026-01-02, 2026-01-02T15:04), " +
	"or an age back from now (90m, 6h, 7d)"

// parseTime reads an operator's time: RFC 3339 with or without fractional
// seconds, a UTC date-time without zone, a UTC date, "now", or an age back
// from now such as "90m", "6h" or "7d".
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time: use %s", timeHelp)
	}
	if s == "now" {
		return now.UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	age := strings.TrimPrefix(s, "-")
	if strings.HasSuffix(age, "d") {
		if n, err := strconv.ParseFloat(strings.TrimSuffix(age, "d"), 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(24*time.Hour))).UTC(), nil
		}
	} else if d, err := time.ParseDuration(age); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use %s", s, timeHelp)
}

// timeFlag is a flag.Value holding an optional time.
type timeFlag struct {
	t   time.Time
	set bool
	now func() time.Time
}

func (f *timeFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.t.Format(time.RFC3339Nano)
}

// ptr returns the time, or nil when the flag was not given.
func (f *timeFlag) ptr() *time.Time {
	if !f.set {
		return nil
	}
	return &f.t
}

func (f *timeFlag) Set(s string) error {
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	t, err := parseTime(s, now())
	if err != nil {
		return err
	}
	f.t, f.set = t, true
	return nil
}

// rateFlag is a flag.Value for a rate such as "50", "50/s" or "600/m".
type rateFlag struct{ perSecond float64 }

func (f *rateFlag) String() string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(f.perSecond, 'g', -1, 64) + "/s"
}

func (f *rateFlag) Set(s string) error {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0) {
		return fmt.Errorf("%q is not a positive rate (examples: 50, 50/s, 600/m)", s)
	}
	switch unit {
	case "", "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return fmt.Errorf("%q: rate unit must be /s, /m or /h", s)
	}
	f.perSecond = n
	return nil
}
