package discovery

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ewgw/ewgw/internal/route"
)

const svcA = "services: [{namespace: ns, name: a, ports: [{port: 443, endpoints: [\"10.0.0.1:8443\"]}]}]\n"
const svcB = "services: [{namespace: ns, name: b, ports: [{port: 443}]}]\n"

func TestFileReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "services.yaml")
		write := func(s string) {
			if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(svcA)
		var got [][]route.Service
		f := &File{Path: path, Interval: time.Second, Update: func(s []route.Service) { got = append(got, s) }}
		if err := f.Load(); err != nil {
			t.Fatal(err)
		}
		go f.Run(t.Context())

		time.Sleep(time.Second) // fake time: one tick, no change
		synctest.Wait()
		if len(got) != 1 {
			t.Fatalf("updates after an unchanged tick = %d, want 1", len(got))
		}
		write("services: [{name: broken}]\n")
		time.Sleep(time.Second)
		synctest.Wait()
		if len(got) != 1 {
			t.Fatalf("a bad file produced an update")
		}
		write(svcB)
		time.Sleep(time.Second)
		synctest.Wait()
		if len(got) != 2 || got[1][0].Key.Name != "b" {
			t.Fatalf("updates = %+v, want the second snapshot with service b", got)
		}
	})
}

func TestFileLoadErrors(t *testing.T) {
	f := &File{Path: filepath.Join(t.TempDir(), "missing"), Update: func([]route.Service) {}}
	if err := f.Load(); !os.IsNotExist(err) {
		t.Fatalf("Load(missing) = %v", err)
	}
}
