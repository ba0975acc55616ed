package stack

import "testing"

func TestCPUDelta(t *testing.T) {
	cases := []struct {
		name string
		a, b CPUSample
		want map[string]float64
	}{
		{"same processes", CPUSample{"sink": {10: 1.5}}, CPUSample{"sink": {10: 2}}, map[string]float64{"sink": 0.5}},
		{"a broker that exited is not a negative figure",
			CPUSample{"kafka": {1: 100, 2: 50}}, CPUSample{"kafka": {2: 51}}, map[string]float64{"kafka": 1}},
		{"a backend that started counts whole",
			CPUSample{"postgres": {5: 10}}, CPUSample{"postgres": {5: 10.25, 6: 0.5}}, map[string]float64{"postgres": 0.75}},
		{"a name only at the end", CPUSample{}, CPUSample{"api": {7: 0.25}}, map[string]float64{"api": 0.25}},
	}
	for _, c := range cases {
		got := CPUDelta(c.a, c.b)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		for k, w := range c.want {
			if got[k] != w {
				t.Errorf("%s: %s = %v, want %v", c.name, k, got[k], w)
			}
		}
	}
}
