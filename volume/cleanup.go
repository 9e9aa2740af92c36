package volume

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// CleanupMounts unmounts every volume and pool mounted under the data dir
// dir, deepest first, and detaches loop devices whose image is under
// it: what a node leaves when it is removed, and what tests call on
// their way out.
func CleanupMounts(dir string) error {
	var errs []error
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mps) - 1; i >= 0; i-- {
		if err := unmount(mps[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := DetachLoops(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// DetachLoops detaches the loop devices whose backing file is under dir
// (mount's autoclear frees them with their last mount; this catches a
// device whose mount never happened).
func DetachLoops(dir string) error {
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var errs []error
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		file := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if file != dir && !strings.HasPrefix(file, dir+"/") {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		if err := detachLoop(dev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
