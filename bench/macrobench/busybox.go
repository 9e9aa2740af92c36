package main

import (
	"flag"
	"fmt"

	"github.com/macro-cloud/macro/internal/testimages"
)

// busyboxMain builds (or finds cached in -dir) the busybox image archive the
// tests use, from Debian's busybox-static, and prints its path.
func busyboxMain(args []string) error {
	fs := flag.NewFlagSet("busybox", flag.ExitOnError)
	dir := fs.String("dir", testimages.DefaultCacheDir, "cache directory")
	fs.Parse(args)
	docker, _, err := testimages.BuildBusyboxArchives(*dir, testimages.BusyboxBinary)
	if err != nil {
		return err
	}
	fmt.Println(docker)
	return nil
}
