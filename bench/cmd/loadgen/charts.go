package main

// drawCharts draws PNG charts of a report next to its JSON; a no-op until a
// plotting library is added.
func drawCharts(rep *report, base string) error { return nil }
