package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
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
	"direct":     {color.RGBA{0x33, 0x33, 0x33, 0xff}, draw.CircleGlyph{}},
	"ewgw":       {color.RGBA{0xd6, 0x27, 0x28, 0xff}, draw.SquareGlyph{}},
	"ewgw-tcp":   {color.RGBA{0xff, 0x7f, 0x0e, 0xff}, draw.BoxGlyph{}},
	"ewgw-noudp": {color.RGBA{0x94, 0x67, 0xbd, 0xff}, draw.CrossGlyph{}},
	"haproxy":    {color.RGBA{0x1f, 0x77, 0xb4, 0xff}, draw.TriangleGlyph{}},
	"nginx":      {color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, draw.PyramidGlyph{}},
}

// writePlots draws the latency each path adds against RTT, throughput
// against loss and the ramp of one download into dir and returns the
// files' names.
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

// latencyPlots is one row per loss rate: what each path adds to the direct
// path's TTFB p50 and warm p50, against RTT, a line per path. The added
// time, not the absolute one, is plotted: at 20 and 80 ms the RTT itself
// dwarfs a proxy's fraction of a millisecond, and absolute lines overlap.
// The RTT axis is logarithmic, ticked at the measured RTTs only.
func latencyPlots(res *results) [][]*plot.Plot {
	var rows [][]*plot.Plot
	for _, loss := range uniqueLosses(res) {
		var row []*plot.Plot
		for _, m := range []struct {
			title     string
			get       func(sample) time.Duration
			legendTop bool // where the lines leave room: ewgw's TTFB falls with the RTT, its warm p50 rises
		}{
			{"new connection, time to first byte (p50)", func(s sample) time.Duration { return s.TTFBP50 }, false},
			{"warm request/response on one connection (p50)", func(s sample) time.Duration { return s.RTTP50 }, true},
		} {
			p := newPlot(res, fmt.Sprintf("%s, loss %g%%", m.title, loss*100), "link RTT (ms)", "ms added to the direct path")
			p.Legend.Top, p.Legend.Left = m.legendTop, true
			rttAxis(p, res)
			for _, path := range res.Paths {
				var xy plotter.XYs
				for _, c := range res.Cells {
					s, direct := m.get(res.get(c, path)), m.get(res.get(c, "direct"))
					if c.Loss == loss && s > 0 && direct > 0 {
						xy = append(xy, plotter.XY{X: msOf(c.RTT), Y: msOf(s - direct)})
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

// rttAxis makes p's X axis logarithmic (the RTTs span 2 to 80 ms) with a
// tick at each measured RTT and nowhere else.
func rttAxis(p *plot.Plot, res *results) {
	var ticks []plot.Tick
	for _, rtt := range uniqueRTTs(res) {
		ticks = append(ticks, plot.Tick{Value: msOf(rtt), Label: strconv.FormatFloat(msOf(rtt), 'g', -1, 64)})
	}
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.ConstantTicks(ticks)
	if len(ticks) > 0 {
		// Room either side of the outer points, in the log scale's terms.
		p.X.Min, p.X.Max = ticks[0].Value/1.4, ticks[len(ticks)-1].Value*1.4
	}
}

func msOf(d time.Duration) float64 { return d.Seconds() * 1e3 }

// throughputPlots is one row per connection count, one column per RTT:
// download throughput against loss, a line per path.
func throughputPlots(res *results) [][]*plot.Plot {
	var rows [][]*plot.Plot
	for i, conns := range []int{1, res.Streams} {
		var row []*plot.Plot
		for _, rtt := range uniqueRTTs(res) {
			p := newPlot(res, fmt.Sprintf("download, %d connection(s), RTT %s", conns, rtt), "loss per direction (%)", "Mbit/s (log scale)")
			// Loss divides throughput by tens: a log axis keeps both ends readable.
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, ticks125{}
			p.X.Tick.Marker = lossTicks(res)
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
		p := newPlot(res, fmt.Sprintf("one download, rate each second (%s, %g Mbit/s link)", c, res.Rate/1e6), "seconds", "Mbit/s")
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

// newPlot starts a plot whose title names the run's date, so that a plot
// never passes for a later run's.
func newPlot(res *results, title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	if !res.Started.IsZero() {
		p.Title.Text += "\nrun of " + res.Started.UTC().Format("2006-01-02 15:04 MST")
	}
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

// lossTicks ticks the loss axis (in percent) at the measured losses only.
func lossTicks(res *results) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	for _, loss := range uniqueLosses(res) {
		ticks = append(ticks, plot.Tick{Value: loss * 100, Label: strconv.FormatFloat(loss*100, 'g', -1, 64)})
	}
	return ticks
}

// ticks125 labels a log axis at 1, 2, 3 and 5 of every decade, so that a
// range within one decade still gets labels (plot.LogTicks labels only
// powers of ten).
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for decade := math.Pow(10, math.Floor(math.Log10(lo))); decade <= hi; decade *= 10 {
		for _, m := range []float64{1, 2, 3, 5} {
			if v := m * decade; v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ticks
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
