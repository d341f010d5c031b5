//go:build race

package gateway

// raceEnabled reports a build with the race detector, which slows the
// rotation tests' exchanges several fold (rotationTTL).
const raceEnabled = true
