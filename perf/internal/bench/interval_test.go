package bench

import "testing"

// The ranks are those of the published tables of confidence intervals for
// a median (e.g. Conover, Practical Nonparametric Statistics, table A3).
func TestMedianIntervalRank(t *testing.T) {
	for _, c := range []struct{ n, k int }{
		{5, 0}, {6, 1}, {8, 1}, {9, 2}, {10, 2}, {12, 3}, {20, 6}, {30, 10}, {36, 12}, {100, 40},
	} {
		if got := medianIntervalRank(c.n, 0.95); got != c.k {
			t.Errorf("n=%d: rank %d, want %d", c.n, got, c.k)
		}
	}
	if got := medianIntervalRank(10, 0.99); got != 1 {
		t.Errorf("n=10 at 99 %%: rank %d, want 1", got)
	}
}

func TestMedianInterval(t *testing.T) {
	v := []float64{12, 3, 7, 1, 9, 5, 11, 2, 8, 4, 10, 6} // 1..12, shuffled
	lo, hi, ok := MedianInterval(v, 0.95)
	if !ok || lo != 3 || hi != 10 {
		t.Errorf("MedianInterval(1..12) = %v, %v, %v; want 3, 10, true", lo, hi, ok)
	}
	if v[0] != 12 || v[1] != 3 {
		t.Errorf("MedianInterval reordered its input: %v", v)
	}
	if _, _, ok := MedianInterval(v[:5], 0.95); ok {
		t.Error("an interval from 5 values at 95 %; none exists")
	}
}
