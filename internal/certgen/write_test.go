package certgen

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	files := []File{{Name: "a/cert.pem", Data: []byte("cert")}, {Name: "a/key.pem", Data: []byte("key"), Private: true}}
	paths, err := WriteFiles(dir, files, false)
	if err != nil || len(paths) != 2 {
		t.Fatalf("WriteFiles = %v, %v", paths, err)
	}
	st, err := os.Stat(filepath.Join(dir, "a/key.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, %v", st.Mode(), err)
	}

	files[0].Data = []byte("new cert")
	files = append([]File{{Name: "b/fresh.pem", Data: []byte("x")}}, files...)
	if _, err := WriteFiles(dir, files, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteFiles: err = %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b/fresh.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused WriteFiles wrote some files")
	}

	os.Chmod(filepath.Join(dir, "a/key.pem"), 0o644)
	if _, err := WriteFiles(dir, files, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a/cert.pem")); string(b) != "new cert" {
		t.Errorf("forced write left %q", b)
	}
	if st, _ := os.Stat(filepath.Join(dir, "a/key.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("forced write left key mode %v", st.Mode())
	}
}

// TestWriteFilesSymlinks: a link in the output directory, to a file or a
// directory outside it, is neither followed nor replaced, and what it points
// at stays as it was.
func TestWriteFilesSymlinks(t *testing.T) {
	tests := []struct {
		name    string
		link    string // created in the output directory, pointing outside
		target  string // "file" or "dir"
		force   bool
		wantErr error // nil: any error
	}{
		{name: "file link, force", link: "a/key.pem", target: "file", force: true, wantErr: ErrNotRegular},
		{name: "file link, no force", link: "a/key.pem", target: "file", wantErr: ErrExists},
		{name: "directory link, force", link: "a", target: "dir", force: true},
		{name: "directory link, no force", link: "a", target: "dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside, dir := t.TempDir(), t.TempDir()
			secret := filepath.Join(outside, "secret")
			if err := os.WriteFile(secret, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			target := secret
			if tt.target == "dir" {
				target = outside
			}
			link := filepath.Join(dir, tt.link)
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			files := []File{{Name: "b/cert.pem", Data: []byte("cert")}, {Name: "a/key.pem", Data: []byte("key"), Private: true}, {Name: "a/secret", Data: []byte("x")}}

			paths, err := WriteFiles(dir, files, tt.force)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("WriteFiles = %v, %v; want error %v", paths, err, tt.wantErr)
			}
			if len(paths) != 0 {
				t.Errorf("wrote %v before refusing", paths)
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != "keep" {
				t.Errorf("file outside the output directory now %q, %v", b, err)
			}
			if st, err := os.Stat(secret); err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("file outside the output directory: %v, %v", st.Mode(), err)
			}
			if _, err := os.Stat(filepath.Join(outside, "key.pem")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a key was written outside the output directory: %v", err)
			}
			if got, err := os.Readlink(link); err != nil || got != target {
				t.Errorf("link now %q, %v; want it left pointing at %q", got, err, target)
			}
		})
	}
}

// TestWriteFilesRenames: a forced write replaces the directory entry, so a
// reader holding the old file keeps its content, a key gets mode 0600
// whatever the old file had, and no temporary file stays behind.
func TestWriteFilesRenames(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(old, []byte("old key"), 0o644); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	if _, err := WriteFiles(dir, []File{{Name: "key.pem", Data: []byte("new key"), Private: true}}, true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(old); err != nil || string(b) != "new key" {
		t.Errorf("key.pem = %q, %v", b, err)
	}
	if st, err := os.Lstat(old); err != nil || st.Mode() != 0o600 {
		t.Errorf("key.pem mode %v, %v; want a regular file of mode 0600", st.Mode(), err)
	}
	buf := make([]byte, 16)
	if n, _ := reader.Read(buf); string(buf[:n]) != "old key" {
		t.Errorf("old file read %q: it was written in place, not replaced", buf[:n])
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
