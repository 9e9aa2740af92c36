package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchRemoteVolume (bench/volfs.sh, with MACRO_VOLFS_BENCH naming a
// report file) runs fio and a small-file loop on the gfs volume of
// TestRemoteVolumeMounts twice: in the primary's own directory (btrfs, as
// a pod on n2 binds it) and through the FUSE mount that n3 made for its
// pod (n3 -> server -> n2's tunnel). Buffered I/O: O_DIRECT is not what
// the close-to-open client does. Sequential figures are the file's size
// over the wall time of the whole fio run, so they include the fetch at
// open and the write-back at close. The small files are then stat'ed
// from another node's mount (n4's; for the primary's directory, the same
// directory): each name once, cold, then after a listing of the directory
// (ls -l, find), twice.
func benchRemoteVolume(t *testing.T, c *nodeCluster, report string) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Fatalf("bench needs fio: %v", err)
	}
	mounts := mountedUnder(t, c.agents["n3"].DataDir+"/volfs")
	if len(mounts) != 1 {
		t.Fatalf("n3's FUSE mounts: %v", mounts)
	}
	other := mountedUnder(t, c.agents["n4"].DataDir+"/volfs")
	if len(other) != 1 {
		t.Fatalf("n4's FUSE mounts: %v", other)
	}
	primary := filepath.Join(c.agents["n2"].DataDir, "btrfs", "pool", "v", "default", "shared")
	paths := []struct{ name, dir, other string }{
		{"primary dir (btrfs)", primary, primary},
		{"FUSE on another node", mounts[0], other[0]},
	}
	size := 256 << 20
	if s, err := strconv.Atoi(os.Getenv("MACRO_VOLFS_BENCH_MB")); err == nil && s > 0 {
		size = s << 20
	}
	fio := func(dir string, args ...string) (time.Duration, float64) {
		out := filepath.Join(t.TempDir(), "fio.json")
		cmd := exec.Command("fio", append([]string{"--name=b", "--filename=" + filepath.Join(dir, "fio.dat"), "--ioengine=psync",
			"--output-format=json", "--output=" + out}, args...)...)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("fio %v: %v\n%s", args, err, b)
		}
		took := time.Since(start)
		var res struct {
			Jobs []struct{ Read, Write struct{ IOPS float64 } }
		}
		b, _ := os.ReadFile(out)
		if err := json.Unmarshal(b, &res); err != nil || len(res.Jobs) != 1 {
			t.Fatalf("fio output: %v", err)
		}
		return took, res.Jobs[0].Read.IOPS + res.Jobs[0].Write.IOPS
	}
	f, err := os.OpenFile(report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sz := strconv.Itoa(size)
	for _, p := range paths {
		mb := float64(size) / 1e6
		w, _ := fio(p.dir, "--rw=write", "--bs=1M", "--size="+sz, "--end_fsync=1")
		r, _ := fio(p.dir, "--rw=read", "--bs=1M", "--size="+sz)
		_, rr := fio(p.dir, "--rw=randread", "--bs=4k", "--size="+sz, "--time_based", "--runtime=5")
		_, rw := fio(p.dir, "--rw=randwrite", "--bs=4k", "--size="+sz, "--time_based", "--runtime=5", "--end_fsync=1")
		os.Remove(filepath.Join(p.dir, "fio.dat"))
		// Small files: write and close 200 files of 4 KiB, then stat each.
		small := filepath.Join(p.dir, "small")
		os.MkdirAll(small, 0o755)
		buf := make([]byte, 4096)
		start := time.Now()
		for i := range 200 {
			if err := os.WriteFile(filepath.Join(small, strconv.Itoa(i)), buf, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		create := time.Since(start)
		start = time.Now()
		for i := range 200 {
			if _, err := os.Stat(filepath.Join(small, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		stat := time.Since(start)
		// From the other node: each name cold, then a listing and a
		// stat of each name, twice (400 stats).
		osmall := filepath.Join(p.other, "small")
		start = time.Now()
		for i := range 200 {
			if _, err := os.Lstat(filepath.Join(osmall, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		ostat := time.Since(start)
		start = time.Now()
		for range 2 {
			des, err := os.ReadDir(osmall)
			if err != nil || len(des) != 200 {
				t.Fatalf("listing %s: %d entries, %v", osmall, len(des), err)
			}
			for _, de := range des {
				if _, err := os.Lstat(filepath.Join(osmall, de.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		lstat := time.Since(start)
		os.RemoveAll(small)
		fmt.Fprintf(f, "%s|%.0f MB/s|%.0f MB/s|%.0f IOPS|%.0f IOPS|%.0f files/s|%.0f stats/s|%.0f stats/s|%.0f stats/s\n", p.name,
			mb/w.Seconds(), mb/r.Seconds(), rr, rw, 200/create.Seconds(), 200/stat.Seconds(), 200/ostat.Seconds(), 400/lstat.Seconds())
	}
}
