// Command capture saves the TLS records carrying one ClientHello, exactly as a
// client sent them, for the sni package's tests and fuzz seeds. It listens on
// a loopback port, takes one connection, writes the hello records to -out and
// closes the connection (the client then reports a handshake failure).
//
// With -go it is also the client: it dials itself with crypto/tls configured
// by the named preset. See README.md for the other clients.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	out := flag.String("out", "", "file to write the hello records to")
	preset := flag.String("go", "", "dial with crypto/tls: mlkem, x25519 or nosni")
	flag.Parse()
	if err := run(*addr, *out, *preset); err != nil {
		log.Fatal(err)
	}
}

func run(addr, out, preset string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	if preset != "" {
		cfg, err := goConfig(preset)
		if err != nil {
			return err
		}
		go dial(ln.Addr().String(), cfg)
	}
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	raw, err := readHello(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "captured %d bytes\n", len(raw))
	return os.WriteFile(out, raw, 0o644)
}

// goConfig returns the client config of a preset. Certificates are never
// checked: the capture server aborts before sending any.
func goConfig(preset string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         "svc.example.test",
		NextProtos:         []string{"h2", "http/1.1"},
		InsecureSkipVerify: true, // the handshake never gets that far
	}
	switch preset {
	case "mlkem":
		cfg.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
	case "x25519":
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	case "nosni":
		cfg.ServerName = ""
		cfg.NextProtos = nil
	default:
		return nil, fmt.Errorf("unknown preset %q", preset)
	}
	return cfg, nil
}

func dial(addr string, cfg *tls.Config) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
}

// readHello reads whole records until they hold one complete handshake
// message (RFC 8446 §5.1), independently of the package under test.
func readHello(r io.Reader) ([]byte, error) {
	var raw, msg []byte
	for len(msg) < 4 || len(msg) < 4+(int(msg[1])<<16|int(msg[2])<<8|int(msg[3])) {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, err
		}
		if hdr[0] != 22 {
			return nil, fmt.Errorf("record type %d, want handshake", hdr[0])
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		raw = append(append(raw, hdr...), body...)
		msg = append(msg, body...)
	}
	return raw, nil
}
