package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ewgw/ewgw/internal/testbed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The clients below verify the backend's own certificate against the
// backend CA, which the proxy never holds: a successful verification proves
// the proxy passed TLS through untouched.

func TestGoClient(t *testing.T) {
	h := newHarness(t, nil)
	tr := &http.Transport{
		TLSClientConfig: h.clientTLS(webName),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + webName + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "hello from web, sni "+webName) {
		t.Fatalf("body = %q", body)
	}
	if got := resp.TLS.PeerCertificates[0]; !got.Equal(h.cert.Leaf) {
		t.Fatalf("client saw certificate %q, not the backend's", got.Subject)
	}
}

func TestCurl(t *testing.T) {
	curl := lookPath(t, "curl")
	h := newHarness(t, nil)
	caFile := writeCA(t, h)
	_, port, _ := net.SplitHostPort(h.addr)
	out, err := exec.CommandContext(t.Context(), curl, "-sS", "--fail", "--cacert", caFile,
		"--resolve", webName+":"+port+":127.0.0.1", "https://"+webName+":"+port+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hello from web") {
		t.Fatalf("curl output = %q", out)
	}
}

func TestOpenSSL(t *testing.T) {
	openssl := lookPath(t, "openssl")
	h := newHarness(t, nil)
	caFile := writeCA(t, h)
	cmd := exec.CommandContext(t.Context(), openssl, "s_client", "-connect", h.addr, "-servername", webName,
		"-CAfile", caFile, "-verify_return_error", "-verify_hostname", webName, "-ign_eof")
	cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: " + webName + "\r\nConnection: close\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	for _, want := range []string{"Verify return code: 0 (ok)", "hello from web"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("openssl output lacks %q:\n%s", want, out)
		}
	}
}

func TestBulkBothWaysWithHalfClose(t *testing.T) {
	h := newHarness(t, nil)
	const size = 100 << 20
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := testbed.Bulk(c, h.clientTLS(bulkName), size, size); err != nil {
		t.Fatal(err)
	}
	if got := h.count(resultOK, ""); got != 1 {
		t.Fatalf("ok connections = %v, want 1", got)
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (make deps installs it): %v", name, err)
	}
	return p
}

func writeCA(t *testing.T, h *harness) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, h.ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
