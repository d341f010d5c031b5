package certgen

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// ErrExists reports that a file to be written already exists.
var ErrExists = errors.New("file exists (use force to overwrite)")

// ErrNotRegular reports that a file to be overwritten is a symbolic link or
// something else that is not a regular file. WriteFiles neither writes
// through a link nor replaces it: a link in the output directory was put
// there on purpose or by someone else, and either way the operator decides.
var ErrNotRegular = errors.New("not a regular file (remove it to let ewgw certs write one)")

// WriteFiles writes files under dir, creating directories as needed, and
// returns the paths written. Unless force is set it writes nothing at all if
// any of the files already exists; with force it writes nothing at all if
// any of them is a symbolic link or not a regular file.
//
// Each file is written to a temporary file of mode 0600 in its directory,
// given its final mode, synced, and then renamed into place (linked, without
// force, so that a file appearing meanwhile is not replaced): a reader sees
// the old content or the new, never a partial key, and a key is never
// readable by others. Everything happens inside dir through an os.Root, so
// no symbolic link leads a write out of dir, and the final rename replaces a
// directory entry rather than following one.
func WriteFiles(dir string, files []File, force bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close() //nolint:errcheck // a directory handle, only read through
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(dir, f.Name)
		if err := checkTarget(root, f.Name, force); err != nil {
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
	}
	for i, f := range files {
		if err := writeFile(root, f, force); err != nil {
			return paths[:i], fmt.Errorf("write %s: %w", paths[i], err)
		}
	}
	return paths, nil
}

// checkTarget returns nil if name may be written: it does not exist, or it
// is a regular file and force is set.
func checkTarget(root *os.Root, name string, force bool) error {
	st, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !force:
		return ErrExists
	case !st.Mode().IsRegular():
		return fmt.Errorf("%v: %w", st.Mode().Type(), ErrNotRegular)
	}
	return nil
}

func writeFile(root *os.Root, f File, force bool) error {
	if err := root.MkdirAll(path.Dir(f.Name), 0o755); err != nil {
		return err
	}
	tmp, err := tempName(f.Name)
	if err != nil {
		return err
	}
	if err := writeTemp(root, tmp, f); err != nil {
		_ = root.Remove(tmp) // best effort; the write's error is the one to report
		return err
	}
	if force {
		err = root.Rename(tmp, f.Name)
	} else if err = root.Link(tmp, f.Name); errors.Is(err, fs.ErrExist) {
		err = ErrExists
	}
	if err != nil || !force {
		_ = root.Remove(tmp) // the link or rename's outcome is what counts
	}
	return err
}

// writeTemp creates tmp with mode 0600, which never follows a link
// (O_EXCL), writes f into it and gives it f's mode.
func writeTemp(root *os.Root, tmp string, f File) error {
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = out.Write(f.Data)
	if err == nil && !f.Private {
		err = out.Chmod(0o644)
	}
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(err, out.Close())
}

// tempName returns a fresh name next to name: ".<base>.tmp-<random>".
func tempName(name string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return path.Join(path.Dir(name), "."+path.Base(name)+".tmp-"+hex.EncodeToString(b[:])), nil
}
