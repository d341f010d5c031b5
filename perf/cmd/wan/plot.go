package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// pathStyle gives each path the same colour and marker in every plot.
var pathStyle = map[string]struct {
	color color.Color
	shape draw.GlyphDrawer
}{
	"direct":  {color.RGBA{0x33, 0x33, 0x33, 0xff}, draw.CircleGlyph{}},
	"ewgw":    {color.RGBA{0xd6, 0x27, 0x28, 0xff}, draw.SquareGlyph{}},
	"haproxy": {color.RGBA{0x1f, 0x77, 0xb4, 0xff}, draw.TriangleGlyph{}},
	"nginx":   {color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, draw.PyramidGlyph{}},
}

// writePlots draws latency against RTT and throughput against loss into
// dir and returns the files' names.
func writePlots(dir string, res *results) ([]string, error) {
	var names []string
	for _, f := range []struct {
		name  string
		tiles [][]*plot.Plot
	}{
		{"latency-vs-rtt.png", latencyPlots(res)},
		{"throughput-vs-loss.png", throughputPlots(res)},
		{"download-ramp.png", rampPlots(res)},
	} {
		if len(f.tiles) == 0 {
			continue
		}
		if err := saveTiles(filepath.Join(dir, f.name), f.tiles); err != nil {
			return nil, err
		}
		names = append(names, f.name)
	}
	return names, nil
}

// latencyPlots is one row per loss rate: TTFB p50 and warm p50 against
// RTT, a line per path.
func latencyPlots(res *results) [][]*plot.Plot {
	var rows [][]*plot.Plot
	for _, loss := range uniqueLosses(res) {
		var row []*plot.Plot
		for _, m := range []struct {
			title string
			get   func(sample) time.Duration
		}{
			{"new connection, time to first byte (p50)", func(s sample) time.Duration { return s.TTFBP50 }},
			{"warm request/response on one connection (p50)", func(s sample) time.Duration { return s.RTTP50 }},
		} {
			p := newPlot(fmt.Sprintf("%s, loss %g%%", m.title, loss*100), "link RTT (ms)", "ms")
			for _, path := range res.Paths {
				var xy plotter.XYs
				for _, c := range res.Cells {
					if s := res.get(c, path); c.Loss == loss && m.get(s) > 0 {
						xy = append(xy, plotter.XY{X: c.RTT.Seconds() * 1e3, Y: m.get(s).Seconds() * 1e3})
					}
				}
				addLine(p, path, xy)
			}
			row = append(row, p)
		}
		rows = append(rows, row)
	}
	return rows
}

// throughputPlots is one row per connection count, one column per RTT:
// download throughput against loss, a line per path.
func throughputPlots(res *results) [][]*plot.Plot {
	var rows [][]*plot.Plot
	for i, conns := range []int{1, res.Streams} {
		var row []*plot.Plot
		for _, rtt := range uniqueRTTs(res) {
			p := newPlot(fmt.Sprintf("download, %d connection(s), RTT %s", conns, rtt), "loss per direction (%)", "Mbit/s (log scale)")
			// Loss divides throughput by tens: a log axis keeps both ends readable.
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
			points := 0
			for _, path := range res.Paths {
				var xy plotter.XYs
				for _, c := range res.Cells {
					s := res.get(c, path)
					v := []float64{s.Down, s.Down8}[i]
					if c.RTT == rtt && v > 0 {
						xy = append(xy, plotter.XY{X: c.Loss * 100, Y: v * 1e3})
					}
				}
				addLine(p, path, xy)
				points += len(xy)
			}
			// A log axis cannot draw an empty plot.
			if points > 0 {
				row = append(row, p)
			}
		}
		if len(row) > 0 {
			rows = append(rows, row)
		}
	}
	return rows
}

// rampPlots is the one-connection download's rate second by second in
// the ramp cell, a line per path.
func rampPlots(res *results) [][]*plot.Plot {
	for _, c := range res.Cells {
		if len(res.get(c, res.Paths[0]).Ramp) == 0 {
			continue
		}
		p := newPlot(fmt.Sprintf("one download, rate each second (%s, %g Mbit/s link)", c, res.Rate/1e6), "seconds", "Mbit/s")
		for _, path := range res.Paths {
			var xy plotter.XYs
			for i, v := range res.get(c, path).Ramp {
				xy = append(xy, plotter.XY{X: float64(i + 1), Y: v})
			}
			addLine(p, path, xy)
		}
		p.Y.Min = 0
		p.Legend.Top = false
		return [][]*plot.Plot{{p}}
	}
	return nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Y.Tick.Marker = plot.DefaultTicks{}
	return p
}

// addLine adds path's points to p as a line with markers.
func addLine(p *plot.Plot, path string, xy plotter.XYs) {
	if len(xy) == 0 {
		return
	}
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return
	}
	st := pathStyle[path]
	l.Color, s.Color, s.Shape = st.color, st.color, st.shape
	l.Width = vg.Points(1.5)
	p.Add(l, s)
	p.Legend.Add(path, l, s)
}

// saveTiles draws rows of plots into one PNG.
func saveTiles(file string, rows [][]*plot.Plot) error {
	const tileW, tileH = 6 * vg.Inch, 4 * vg.Inch
	cols := 0
	for _, r := range rows {
		cols = max(cols, len(r))
	}
	img := vgimg.New(tileW*vg.Length(cols), tileH*vg.Length(len(rows)))
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(rows), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for i, r := range rows {
		for j, p := range r {
			p.Draw(t.At(dc, j, i))
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func uniqueLosses(res *results) []float64 {
	var out []float64
	seen := map[float64]bool{}
	for _, c := range res.Cells {
		if !seen[c.Loss] {
			seen[c.Loss] = true
			out = append(out, c.Loss)
		}
	}
	return out
}

func uniqueRTTs(res *results) []time.Duration {
	var out []time.Duration
	seen := map[time.Duration]bool{}
	for _, c := range res.Cells {
		if !seen[c.RTT] {
			seen[c.RTT] = true
			out = append(out, c.RTT)
		}
	}
	return out
}
