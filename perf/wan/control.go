package wan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
)

// Report is what the control endpoint tells about the link: its shape, each
// direction's counters since the last reset, the forwarder's CPU seconds,
// and the packets each TUN device's own queue dropped because the
// forwarder did not read them in time.
type Report struct {
	Config     Config  `json:"config"`
	AB         Stats   `json:"ab"` // NamespaceA → NamespaceB
	BA         Stats   `json:"ba"`
	CPU        float64 `json:"cpu"`
	DeviceDrop int64   `json:"device_drop"`
}

// Handler serves the control API of l: GET /link returns a Report; POST
// /link with a Config reshapes the link and resets the counters; POST
// /reset resets the counters only.
func Handler(l *Link) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /link", func(w http.ResponseWriter, r *http.Request) {
		ab, ba := l.Stats()
		_ = json.NewEncoder(w).Encode(Report{Config: l.Config(), AB: ab, BA: ba, CPU: selfCPU(), DeviceDrop: deviceDrops()})
	})
	mux.HandleFunc("POST /link", func(w http.ResponseWriter, r *http.Request) {
		var c Config
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l.Set(c)
		l.Reset()
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) { l.Reset() })
	return mux
}

// selfCPU returns this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// deviceDrops returns the TUN devices' transmit drops, summed.
func deviceDrops() int64 {
	var total int64
	for _, ns := range []string{NamespaceA, NamespaceB} {
		out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", "dev", Device).Output()
		if err != nil {
			continue
		}
		var links []struct {
			Stats struct {
				TX struct {
					Dropped int64 `json:"dropped"`
				} `json:"tx"`
			} `json:"stats64"`
		}
		if json.Unmarshal(out, &links) == nil && len(links) == 1 {
			total += links[0].Stats.TX.Dropped
		}
	}
	return total
}

// Client talks to the control endpoint on a unix socket (a path, so it
// reaches across network namespaces).
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Set reshapes the link and resets its counters.
func (c *Client) Set(cfg Config) error {
	b, _ := json.Marshal(cfg)
	return c.do("POST", "/link", b, nil)
}

// Reset resets the counters.
func (c *Client) Reset() error { return c.do("POST", "/reset", nil, nil) }

// Report returns the link's shape and counters.
func (c *Client) Report() (Report, error) {
	var r Report
	err := c.do("GET", "/link", nil, &r)
	return r, err
}

func (c *Client) do(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, "http://link"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("link control %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("link control %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
