// Package atomicfile replaces a file whole: a reader sees the old content
// or the new, never a mix, and after a crash (of the process or of the
// machine) the file holds one of the two. The data is synced before the
// rename and the directory after it; the temporary file sits beside the
// target (so the rename never crosses filesystems), under a name of its
// own (so two writers never share one), and never has a wider mode than
// the file it becomes.
package atomicfile

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
)

// Write replaces the file at path with data, mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, func(f io.Writer) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteWith is Write of what fn writes (through a buffer): a large file
// need not be made in memory first.
func WriteWith(path string, perm os.FileMode, fn func(io.Writer) error) error {
	return write(path, perm, func(f io.Writer) error {
		bw := bufio.NewWriterSize(f, 256<<10)
		if err := fn(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func write(path string, perm os.FileMode, fn func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a failure; renamed away otherwise
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the entries of dir (a rename or a new file in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
