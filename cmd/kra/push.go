package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// pushFlags are the flags of kra push.
type pushFlags struct {
	file     string
	archive  string
	oci      string
	progress string
	jobs     int
	quiet    bool
}

func newPushCmd(a *app) *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:   "push [IMAGE...]",
		Short: "Push images to your registry on macro",
		Long: `Push images to your tenant's registry on macro's API port, where
docker run and docker compose up find them.

With no IMAGE, kra pushes the images of the compose file: compose.yaml,
compose.yml, docker-compose.yml or docker-compose.yaml here, or -f FILE
(each service's image:, or <project>-<service> for a service that is only
built, as docker compose build names it).

The images come from the local docker engine (DOCKER_HOST, default
unix:///var/run/docker.sock), or from a file:
  --archive FILE   a docker save archive (docker save -o FILE IMAGE...)
                   or an OCI archive; with no IMAGE and no compose file,
                   every image it names
  --oci DIR        an OCI image layout directory (skopeo copy ... oci:DIR)
An archive or a layout holding one image with no name, or only a tag for
a name (skopeo copy ... oci:DIR:TAG), pushes it under the IMAGE given.

An image keeps its name without its registry: ghcr.io/acme/app:1 becomes
acme/app:1 of your tenant, busybox stays busybox:latest; run it as
docker run acme/app:1 or docker run HOST:PORT/acme/app:1.

Layers the registry has already (in any of your repositories) are not sent
again. kra gzips the plain tar layers of docker save once and remembers the
result in $XDG_CACHE_HOME/kra/layers.json, so an unchanged layer is neither
compressed nor sent on the next push (the compressed layers wait in
$TMPDIR while they are sent). Uploads go in 32 MiB chunks; one cut off
resumes where it stopped; a push that fails leaves no image behind.

On a terminal, kra shows a line per layer with a progress bar, bytes and
speed; otherwise (CI logs, --progress plain) a line per step.`,
		Example: `  kra push                          # the images of ./compose.yaml, from docker
  kra push myapp:1.2 worker:1.2
  kra push -f deploy/compose.yaml
  docker save -o app.tar myapp:1.2 && kra push --archive app.tar
  kra push --oci ./layout myapp:1.2`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.push(cmd.Context(), cmd.OutOrStdout(), f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "compose file whose images to push, when no IMAGE is named")
	fl.StringVar(&f.archive, "archive", "", "push from a docker save archive (or OCI archive) FILE instead of the docker engine")
	fl.StringVar(&f.oci, "oci", "", "push from an OCI image layout directory DIR instead of the docker engine")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto (bars on a terminal), tty or plain")
	fl.IntVarP(&f.jobs, "jobs", "j", 3, "layers compressed and sent at once")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the pushed references")
	cmd.MarkFlagsMutuallyExclusive("archive", "oci")
	cmd.RegisterFlagCompletionFunc("progress", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"auto", "tty", "plain"}, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.MarkFlagFilename("file", "yaml", "yml")
	cmd.MarkFlagFilename("archive", "tar")
	cmd.MarkFlagDirname("oci")
	return cmd
}

// imageSource gives the images to push by name.
type imageSource interface {
	// image returns the image named ref, and a function to call when done
	// with it. It tells what it does with status: a step (a line of its
	// own), or how far the step is (progress, on a terminal only).
	image(ctx context.Context, ref string, status func(s string, progress bool)) (*srcImage, func(), error)
	// names are the names of its images, when it can list them.
	names() ([]string, error)
	io.Closer
}

// fileSource is an archive or a layout: its images read once.
type fileSource struct {
	path   string
	imgs   []srcImage
	closer io.Closer
}

func openFileSource(p string) (*fileSource, error) {
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such file or directory", p)
	}
	if err != nil {
		return nil, err
	}
	var fsys imageFS
	s := &fileSource{path: p}
	if st.IsDir() {
		root, err := os.OpenRoot(p)
		if err != nil {
			return nil, err
		}
		fsys, s.closer = dirFS{root}, root
	} else {
		t, err := openTar(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		fsys, s.closer = t, t
	}
	s.imgs, err = readImages(fsys)
	if err != nil {
		s.closer.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return s, nil
}

func (s *fileSource) image(_ context.Context, ref string, _ func(string, bool)) (*srcImage, func(), error) {
	im, err := pick(s.imgs, ref)
	var nf *imageNotFoundError
	if errors.As(err, &nf) {
		nf.where = s.path
	}
	return im, func() {}, err
}

func (s *fileSource) names() ([]string, error) {
	var out []string
	for _, im := range s.imgs {
		if len(im.names) == 0 {
			continue
		}
		// The first name that is a full reference, not a bare tag.
		n := im.names[0]
		for _, c := range im.names {
			if strings.ContainsAny(c, ":/") {
				n = c
				break
			}
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no image: say which name to push it as (kra push --archive FILE NAME)", s.path)
	}
	return out, nil
}

func (s *fileSource) Close() error { return s.closer.Close() }

// engineSource is the local docker engine.
type engineSource struct {
	d      *dockerEngine
	tmpDir string
}

func (s *engineSource) image(ctx context.Context, ref string, status func(string, bool)) (*srcImage, func(), error) {
	status("Reading "+ref+" from the docker engine at "+s.d.host, false)
	p, err := s.d.save(ctx, ref, s.tmpDir, func(n int64) {
		status("Reading "+ref+" from the docker engine at "+s.d.host+": "+formatSize(n), true)
	})
	if err != nil {
		return nil, nil, err
	}
	t, err := openTar(p)
	if err != nil {
		os.Remove(p)
		return nil, nil, fmt.Errorf("docker save %s: %w", ref, err)
	}
	done := func() { t.Close(); os.Remove(p) }
	imgs, err := readImages(t)
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("docker save %s: %w", ref, err)
	}
	im, err := pick(imgs, ref)
	if err != nil {
		done()
		return nil, nil, err
	}
	return im, done, nil
}

func (s *engineSource) names() ([]string, error) {
	return nil, errors.New("no image named and no compose file here: name the images to push")
}

func (s *engineSource) Close() error { return nil }

// push is kra push.
func (a *app) push(ctx context.Context, out io.Writer, f pushFlags, args []string) error {
	switch f.progress {
	case "auto", "tty", "plain":
	default:
		return usageError{fmt.Errorf("invalid --progress %q: use auto, tty or plain", f.progress)}
	}
	if f.jobs < 1 {
		return usageError{fmt.Errorf("invalid --jobs %d: at least 1", f.jobs)}
	}
	// What to push, and the server, before reading any image.
	refs := args
	var src imageSource
	fromFile := f.archive != "" || f.oci != ""
	if len(refs) == 0 {
		cf, err := findComposeFile(".", f.file)
		switch {
		case err == nil:
			if refs, err = composeImages(cf); err != nil {
				return err
			}
		case !fromFile:
			return usageError{err}
		}
	} else if f.file != "" {
		return usageError{errors.New("name images or a compose file (-f), not both")}
	}
	for _, r := range refs {
		if _, _, err := destination(r); err != nil {
			return err
		}
	}
	c, err := a.native()
	if err != nil {
		return err
	}
	id, err := c.WhoAmI(ctx)
	if err != nil {
		return err
	}

	tmpDir := os.TempDir()
	if fromFile {
		p := f.archive
		if p == "" {
			p = f.oci
		}
		fsrc, err := openFileSource(p)
		if err != nil {
			return err
		}
		src = fsrc
		if len(refs) == 0 {
			if refs, err = fsrc.names(); err != nil {
				return err
			}
		}
	} else {
		d, err := newDockerEngine()
		if err != nil {
			return err
		}
		src = &engineSource{d: d, tmpDir: tmpDir}
	}
	defer src.Close()

	width, height := 0, 0
	switch f.progress {
	case "auto":
		width, height = terminalSize(out)
	case "tty":
		if width, height = terminalSize(out); width == 0 {
			width = 100
		}
	}
	cache := openLayerCache()
	defer cache.save()
	for _, ref := range refs {
		if err := a.pushOne(ctx, out, c, id.Tenant, src, ref, f, width, height, cache, tmpDir); err != nil {
			return err
		}
		cache.save()
	}
	return nil
}

// pushOne pushes one image and prints what happened.
func (a *app) pushOne(ctx context.Context, out io.Writer, c *client.Client, tenant string, src imageSource, ref string, f pushFlags, width, height int, cache *layerCache, tmpDir string) error {
	repo, tag, err := destination(ref)
	if err != nil {
		return err
	}
	dest := c.RegistryHost() + "/" + repo + ":" + tag
	status := func(s string, progress bool) {
		switch {
		case f.quiet:
		case width > 0:
			fmt.Fprintf(out, "\r\x1b[2K%s", s)
		case !progress:
			fmt.Fprintln(out, s)
		}
	}
	start := time.Now()
	im, done, err := src.image(ctx, ref, status)
	if width > 0 && !f.quiet {
		fmt.Fprint(out, "\r\x1b[2K")
	}
	if err != nil {
		return err
	}
	defer done()
	if !f.quiet {
		fmt.Fprintf(out, "Pushing %s to %s (tenant %s)\n", ref, dest, tenant)
	}
	view := newPushView(out, width, height, len(im.img.Layers))
	opts := client.PushOptions{Jobs: f.jobs, Cache: cache, TempDir: tmpDir}
	if !f.quiet {
		opts.Progress = view.update
	}
	res, err := c.Push(ctx, repo, tag, im.img, opts)
	if !f.quiet {
		view.finish()
	}
	var ce *client.Error
	if errors.As(err, &ce) && strings.HasPrefix(ce.Path, "/v2/") && ce.Status != http.StatusUnauthorized {
		// The registry's own words (a 429 is its room for uploads, a 403
		// a quota, not a throttled login or a certificate), with the image.
		if ce.Status == http.StatusTooManyRequests {
			return fmt.Errorf("pushing %s: the registry is busy: %s", ref, ce.Message)
		}
		return fmt.Errorf("pushing %s: %s", ref, err.Error())
	}
	if err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	if f.quiet {
		fmt.Fprintf(out, "%s@%s\n", dest, res.Digest)
		return nil
	}
	layers := "layers"
	if res.Layers == 1 {
		layers = "layer"
	}
	fmt.Fprintf(out, "%s: digest %s\n", dest, res.Digest)
	mounted := ""
	if res.Mounted > 0 {
		mounted = fmt.Sprintf(", %d mounted", res.Mounted)
	}
	fmt.Fprintf(out, "%d %s: %d pushed, %d already there%s; %s sent in %s\n",
		res.Layers, layers, res.Pushed, res.Existing, mounted, formatSize(res.BytesSent), time.Since(start).Round(time.Millisecond))
	return nil
}
