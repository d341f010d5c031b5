//go:build e2e

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// observation is what one connection showed the client. The suite decides
// which cluster served a connection from Cert (each backend has its own
// certificate) and Body (each backend greets with its cluster's name).
type observation struct {
	// Cert is the SHA-256 (hex) of the leaf certificate the server
	// presented; empty when none arrived.
	Cert string `json:"cert,omitempty"`
	// Subject is that certificate's subject.
	Subject string `json:"subject,omitempty"`
	// Verified: the chain verified against --ca for the name --sni.
	Verified bool `json:"verified"`
	// Body is the HTTP response body.
	Body string `json:"body,omitempty"`
	// Refused: the connection ended before any server certificate arrived
	// (the gateway closed it, or nothing accepted it).
	Refused bool `json:"refused"`
	// Error is why the call failed, if it did.
	Error string `json:"error,omitempty"`
}

// outcome is a distinct observation and how many connections saw it.
type outcome struct {
	observation
	Count int `json:"count"`
}

// report is call's output: one JSON object.
type report struct {
	Connections int     `json:"connections"`
	ElapsedMS   float64 `json:"elapsed_ms"`
	// Matched: in --until-* mode, the last connection met the condition.
	Matched bool `json:"matched"`
	// MatchStart and PrevStart (Unix nanoseconds) are when the matching
	// connection and the one before it began: the change the client waited
	// for happened between them (before MatchStart, if it was the first).
	MatchStart int64 `json:"match_start_unix_nano,omitempty"`
	PrevStart  int64 `json:"prev_start_unix_nano,omitempty"`
	// MatchEnd is when the matching connection ended (a refusal is seen
	// at its end, a routing choice at its start).
	MatchEnd int64 `json:"match_end_unix_nano,omitempty"`
	// Outcomes are the distinct observations in first-seen order; the
	// Error of each is its first connection's.
	Outcomes []outcome   `json:"outcomes"`
	Last     observation `json:"last"`
}

// call makes TLS connections to addr with server name sni, verifying the
// server against the CA in --ca, and sends one HTTP GET on each.
func call(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	addr := fs.String("addr", "", "the gateway, host:port")
	sni := fs.String("sni", "", "server name to ask for (and verify)")
	caFile := fs.String("ca", "", "CA certificates (PEM) the servers' certificates chain to")
	n := fs.Int("n", 1, "connections to make")
	workers := fs.Int("c", 1, "connections at a time")
	untilCert := fs.String("until-cert", "", "connect until a server presents this certificate (SHA-256 hex), verified")
	untilRefused := fs.Bool("until-refused", false, "connect until one is refused before any certificate")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after (--until-* only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificates", *caFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: *sni, MinVersion: tls.VersionTLS12}
	var r tally
	start := time.Now()
	if *untilCert != "" || *untilRefused {
		match := func(o observation) bool {
			return (*untilRefused && o.Refused) || (o.Verified && o.Cert == *untilCert)
		}
		r.until(ctx, *timeout, func() observation { return callOnce(ctx, *addr, *sni, cfg) }, match)
	} else {
		r.many(*n, *workers, func() observation { return callOnce(ctx, *addr, *sni, cfg) })
	}
	r.rep.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
	return json.NewEncoder(stdout).Encode(r.rep)
}

// tally counts observations into a report.
type tally struct {
	mu    sync.Mutex
	index map[observation]int
	rep   report
}

func (t *tally) add(o observation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rep.Connections++
	t.rep.Last = o
	key := o
	key.Error = "" // messages differ per connection (ports); the class does not
	if t.index == nil {
		t.index = map[observation]int{}
	}
	i, ok := t.index[key]
	if !ok {
		i = len(t.rep.Outcomes)
		t.index[key] = i
		t.rep.Outcomes = append(t.rep.Outcomes, outcome{observation: o})
	}
	t.rep.Outcomes[i].Count++
}

func (t *tally) until(ctx context.Context, timeout time.Duration, once func() observation, match func(observation) bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		began := time.Now().UnixNano()
		o := once()
		t.add(o)
		if match(o) {
			t.rep.Matched, t.rep.MatchStart, t.rep.MatchEnd = true, began, time.Now().UnixNano()
			return
		}
		t.rep.PrevStart = began
	}
}

func (t *tally) many(n, workers int, once func() observation) {
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range max(workers, 1) {
		wg.Go(func() {
			for range next {
				t.add(once())
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}

// callOnce is one connection: dial, handshake, GET /, read the body.
func callOnce(ctx context.Context, addr, sni string, cfg *tls.Config) (o observation) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return observation{Refused: true, Error: err.Error()}
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
			leaf := ve.UnverifiedCertificates[0]
			return observation{Cert: fingerprint(leaf), Subject: leaf.Subject.String(), Error: err.Error()}
		}
		return observation{Refused: true, Error: err.Error()}
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	o = observation{Cert: fingerprint(leaf), Subject: leaf.Subject.String(), Verified: true}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+sni+"/", nil)
	if err != nil {
		o.Error = err.Error()
		return o
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		o.Error = "write request: " + err.Error()
		return o
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		o.Error = "read response: " + err.Error()
		return o
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	o.Body = string(body)
	if err != nil {
		o.Error = "read body: " + err.Error()
	} else if resp.StatusCode != http.StatusOK {
		o.Error = "status " + resp.Status
	}
	return o
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
