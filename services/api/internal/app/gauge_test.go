package app

import "github.com/prometheus/client_golang/prometheus/testutil"

func testutilGauge(a *API) float64 { return testutil.ToFloat64(a.m.subscribers) }
