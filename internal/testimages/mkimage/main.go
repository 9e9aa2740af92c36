// Command mkimage packs a root filesystem tarball into a one-layer image
// archive in `docker save` format, without a Docker engine. Test image
// scripts use it (scripts/build-redis-image.sh):
//
//	go run ./internal/testimages/mkimage -layer rootfs.tar -tag redis:test \
//	    -config '{"Cmd":["redis-server"],"ExposedPorts":{"6379/tcp":{}}}' -o redis.tar
//
// -config is the image's container config as JSON (the "config" object of an
// image config: Cmd, Entrypoint, Env, User, WorkingDir, ExposedPorts, ...);
// PATH is added to Env when it has none.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/macro-cloud/macro/internal/testimages"
)

func main() {
	layer := flag.String("layer", "", "uncompressed tar of the root filesystem")
	tag := flag.String("tag", "", "repo:tag the archive names the image")
	config := flag.String("config", "{}", "container config as JSON")
	out := flag.String("o", "", "archive to write")
	oci := flag.Bool("oci", false, "write an OCI image-layout archive instead")
	createdBy := flag.String("created-by", "macro mkimage", "the history entry of the layer")
	flag.Parse()
	if *layer == "" || *tag == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*layer, *tag, *config, *createdBy, *out, *oci); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(layerPath, tag, config, createdBy, out string, oci bool) error {
	var cfg v1.Config
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	hasPath := false
	for _, e := range cfg.Env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
	}
	if !hasPath {
		cfg.Env = append([]string{testimages.DefaultPath}, cfg.Env...)
	}
	layer, err := tarball.LayerFromFile(layerPath)
	if err != nil {
		return err
	}
	now := v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      now,
		RootFS:       v1.RootFS{Type: "layers"},
		Config:       cfg,
	})
	if err != nil {
		return err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: now, CreatedBy: createdBy}})
	if err != nil {
		return err
	}
	if oci {
		return testimages.WriteOCIArchiveFile(out, img, tag)
	}
	return testimages.WriteDockerArchiveFile(out, img, tag)
}
