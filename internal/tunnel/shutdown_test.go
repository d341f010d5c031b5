package tunnel

import (
	"errors"
	"testing"
)

func TestGracefulShutdownDrains(t *testing.T) {
	const kib = 256
	a, b := streamPair(t)
	s, err := a.tun.Open(t.Context(), "west", Header{Namespace: "default", Name: svcSHA, Port: kib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := payload(11, 1<<20)
	if _, err := s.Write(req[:1000]); err != nil {
		t.Fatal(err)
	}

	stopped := make(chan struct{})
	go func() { b.stop(); close(stopped) }()
	// The GOAWAY arrives: west is down for new streams, the stream lives on.
	waitPeer(t, a, "west", isDown)
	if _, err := b.tun.Open(t.Context(), "east", sampleHeader(), nil); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("b open while draining: %v, want ErrShuttingDown", err)
	}
	if _, err := a.tun.Open(t.Context(), "west", sampleHeader(), nil); !errors.Is(err, ErrNoConnection) {
		t.Errorf("a open to draining peer: %v, want ErrNoConnection", err)
	}
	// A stream that races the GOAWAY is refused with CodeShuttingDown.
	hdr, _ := sampleHeader().AppendBinary(nil)
	var re *RefusedError
	if err := rawOpen(t, a, "west", hdr, true); !errors.As(err, &re) || re.Code != CodeShuttingDown {
		t.Errorf("raw open on draining conn: %v, want refusal shutting_down", err)
	}
	select {
	case <-stopped:
		t.Fatal("b stopped with a stream in flight")
	default:
	}

	// The rest of the in-flight stream still goes both ways.
	if _, err := s.Write(req[1000:]); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := readReply(s, req, kib); err != nil {
		t.Fatal(err)
	}
	s.Close()
	<-stopped
	waitPeer(t, a, "west", func(ps PeerStatus) bool { return ps.Conns == 0 })
}
