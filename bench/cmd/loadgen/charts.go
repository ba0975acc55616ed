package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/reviewpipe/reviewpipe/bench/internal/load"
)

// drawCharts writes two PNGs next to the report's JSON (base-*.png): the
// store's row count over the closed-loop phase of every run (its slope is
// the sustained throughput) and the webhook p99 per second of the
// open-loop phase.
func drawCharts(rep *report, base string) error {
	rows := plot.New()
	rows.Title.Text = "Rows in PostgreSQL during the maximum phase"
	rows.X.Label.Text = "seconds since the first webhook"
	rows.Y.Label.Text = "rows"
	lat := plot.New()
	lat.Title.Text = "Webhook answer p99 per second, open-loop phase"
	lat.X.Label.Text = "second"
	lat.Y.Label.Text = "p99 (ms)"
	i := 0
	for _, s := range rep.Results {
		for j, r := range s.Runs {
			name := fmt.Sprintf("%s #%d %s", s.Name, j+1, r.Variant)
			c := plotutil.Color(i)
			i++
			if err := addLine(rows, name, c, r.Rows); err != nil {
				return err
			}
			if err := addLine(lat, name, c, r.Latency); err != nil {
				return err
			}
		}
	}
	if i == 0 {
		return nil
	}
	for _, p := range []*plot.Plot{rows, lat} {
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
	}
	if err := rows.Save(8*vg.Inch, 4.5*vg.Inch, base+"-rows.png"); err != nil {
		return err
	}
	return lat.Save(8*vg.Inch, 4.5*vg.Inch, base+"-webhook-p99.png")
}

func addLine(p *plot.Plot, name string, c color.Color, ps []load.Point) error {
	if len(ps) == 0 {
		return nil
	}
	xy := make(plotter.XYs, len(ps))
	for k, pt := range ps {
		xy[k].X, xy[k].Y = pt.T, pt.V
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
