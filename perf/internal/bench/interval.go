package bench

import (
	"math"
	"slices"
)

// MedianInterval returns a distribution-free confidence interval, at level
// or above, for the median of the population v was drawn from: the order
// statistics x(k) and x(n+1-k), for the largest k whose binomial tail
// P(Binomial(n, ½) < k) is at most (1-level)/2. It assumes only that the
// values are independent draws of one distribution, which the rounds of a
// benchmark run back to back approximate. ok is false when v is too short
// for any interval at that level (fewer than 6 values for 95 %).
func MedianInterval(v []float64, level float64) (lo, hi float64, ok bool) {
	k := medianIntervalRank(len(v), level)
	if k == 0 {
		return 0, 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[k-1], s[len(s)-k], true
}

// medianIntervalRank returns MedianInterval's k for n values, or 0 if there
// is none.
func medianIntervalRank(n int, level float64) int {
	alpha := (1 - level) / 2
	lgN, _ := math.Lgamma(float64(n + 1))
	k, tail := 0, 0.0 // tail is P(B < k+1) once P(B = k) is added
	for j := 0; j < n/2; j++ {
		lgJ, _ := math.Lgamma(float64(j + 1))
		lgNJ, _ := math.Lgamma(float64(n - j + 1))
		tail += math.Exp(lgN - lgJ - lgNJ - float64(n)*math.Ln2)
		if tail > alpha {
			break
		}
		k = j + 1
	}
	return k
}
