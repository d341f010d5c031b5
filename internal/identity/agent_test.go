package identity

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// fakeAgent is a minimal SPIFFE Workload API server (the public proto;
// go-spiffe's own fake is internal): FetchX509SVID streams the current
// response and every later one.
type fakeAgent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	addr string

	mu   sync.Mutex
	resp *workload.X509SVIDResponse
	subs []chan *workload.X509SVIDResponse
}

// startAgent serves a fakeAgent on a unix socket until the test ends.
func startAgent(t *testing.T) *fakeAgent {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{addr: "unix://" + sock}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return a
}

// FetchX509SVID implements the Workload API stream.
func (a *fakeAgent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ch := make(chan *workload.X509SVIDResponse, 1)
	a.mu.Lock()
	a.subs = append(a.subs, ch)
	if a.resp != nil {
		ch <- a.resp
	}
	a.mu.Unlock()
	for {
		select {
		case r := <-ch:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// set publishes an SVID from d, d's bundle, and federated bundles.
func (a *fakeAgent) set(t *testing.T, d *domain, id string, federated ...*domain) (certPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := d.inter.IssueSVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pem.Decode(keyPEM)
	r := &workload.X509SVIDResponse{
		Svids:            []*workload.X509SVID{{SpiffeId: id, X509Svid: der(t, certPEM), X509SvidKey: key.Bytes, Bundle: der(t, d.bundle())}},
		FederatedBundles: map[string][]byte{},
	}
	for _, f := range federated {
		r.FederatedBundles["spiffe://"+f.td] = der(t, f.bundle())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resp = r
	for _, ch := range a.subs {
		select { // replace an unsent response
		case <-ch:
		default:
		}
		ch <- r
	}
	return certPEM
}

// der concatenates the DER of PEM certificates, the Workload API encoding.
func der(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return out
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Fatal(err)
		}
		out = append(out, blk.Bytes...)
	}
}
