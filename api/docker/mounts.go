package docker

import (
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/macro-cloud/macro/types"
)

// mountRequest is what a create request asks to mount, gathered from
// HostConfig.Binds, HostConfig.Mounts, Config.Volumes and the image's
// VOLUMEs. Tmpfs mounts go to the spec's Tmpfs map, where `--tmpfs` puts
// them too.
type mountRequest struct {
	Mounts []types.Mount
	Tmpfs  map[string]string
}

// parseMounts translates the mount requests of a create into the pod's
// mounts, with Docker's rules and words for the errors. allowBind says
// whether the caller may bind host paths (the machine's own socket only).
// Volumes without a name (-v /path, an image's VOLUME) come back with an
// empty Source: the caller names them.
func parseMounts(binds []string, mounts []mount.Mount, tmpfs map[string]string, volumes map[string]struct{}, imageVolumes map[string]struct{}, allowBind bool) (mountRequest, error) {
	out := mountRequest{Tmpfs: map[string]string{}}
	for k, v := range tmpfs {
		out.Tmpfs[k] = v
	}
	taken := map[string]bool{}
	for d := range tmpfs {
		taken[path.Clean(d)] = true
	}
	add := func(m types.Mount) error {
		if err := checkTarget(m.Target); err != nil {
			return err
		}
		m.Target = path.Clean(m.Target)
		if taken[m.Target] {
			return badRequest("Duplicate mount point: %s", m.Target)
		}
		taken[m.Target] = true
		if m.Type == "bind" && !allowBind {
			return badRequest("bind mounts of host paths are not available to tenants (%s:%s): use a volume (docker volume create, -v NAME:%s)", m.Source, m.Target, m.Target)
		}
		if m.Type == "tmpfs" {
			opts := []string{}
			if m.TmpfsSize > 0 {
				opts = append(opts, "size="+strconv.FormatInt(m.TmpfsSize, 10))
			}
			if m.TmpfsMode != 0 {
				opts = append(opts, "mode="+strconv.FormatUint(uint64(m.TmpfsMode), 8))
			}
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			// The spec's Tmpfs map mounts it; Mounts keeps it for inspect.
			out.Tmpfs[m.Target] = strings.Join(opts, ",")
		}
		out.Mounts = append(out.Mounts, m)
		return nil
	}
	for _, b := range binds {
		m, err := parseBind(b)
		if err != nil {
			return out, err
		}
		if err := add(m); err != nil {
			return out, err
		}
	}
	for _, mm := range mounts {
		m, err := fromAPIMount(mm)
		if err != nil {
			return out, err
		}
		if err := add(m); err != nil {
			return out, err
		}
	}
	// Anonymous volumes: -v /path (Config.Volumes), then the image's
	// VOLUMEs, each unless something is mounted there already.
	for _, set := range []map[string]struct{}{volumes, imageVolumes} {
		dests := make([]string, 0, len(set))
		for d := range set {
			dests = append(dests, d)
		}
		sort.Strings(dests)
		for _, d := range dests {
			if err := checkTarget(d); err != nil {
				return out, err
			}
			if taken[path.Clean(d)] {
				continue
			}
			if err := add(types.Mount{Type: "volume", Target: d}); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func checkTarget(t string) error {
	if t == "" {
		return badRequest("invalid mount config: Target must not be empty")
	}
	if !path.IsAbs(t) {
		return badRequest("invalid mount config for type \"volume\": invalid mount path: '%s' mount path must be absolute", t)
	}
	if path.Clean(t) == "/" {
		return badRequest("invalid specification: destination can't be '/'")
	}
	if strings.ContainsRune(t, 0) {
		return badRequest("invalid mount path %q", t)
	}
	return nil
}

// parseBind reads one -v/--volume spec of HostConfig.Binds:
// SRC:DST[:OPTS], where SRC is an absolute host path (a bind mount) or a
// volume name; NAME/sub mounts a sub-path of the volume (Kraud's form;
// Docker itself refuses a name with a slash). OPTS are Docker's: ro, rw,
// nocopy, z, Z, and the propagation modes, of which only rprivate (the
// default) is supported.
func parseBind(spec string) (types.Mount, error) {
	var m types.Mount
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return m, badRequest("invalid volume specification: '%s'", spec)
	}
	src, dst := parts[0], parts[1]
	m.Target = dst
	if strings.HasPrefix(src, "/") {
		m.Type, m.Source = "bind", path.Clean(src)
	} else {
		m.Type = "volume"
		name, sub, _ := strings.Cut(src, "/")
		if !validName.MatchString(name) {
			return m, badRequest("create %s: volume name is too short, names should be at least two alphanumeric characters", name)
		}
		m.Source = name
		if sub != "" {
			p, err := cleanSubpath(sub)
			if err != nil {
				return m, err
			}
			m.Subpath = p
		}
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw", "z", "Z", "rprivate":
			case "nocopy":
				if m.Type != "volume" {
					return m, badRequest("invalid volume specification: '%s': nocopy applies to volumes only", spec)
				}
				m.NoCopy = true
			case "private", "shared", "rshared", "slave", "rslave":
				return m, badRequest("invalid volume specification: '%s': mount propagation %s is not supported", spec, o)
			default:
				return m, badRequest("invalid mode: %s", o)
			}
		}
	}
	return m, nil
}

// cleanSubpath checks a volume sub-path: relative, inside the volume.
func cleanSubpath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", badRequest("invalid volume subpath %q: must be a relative path inside the volume", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", badRequest("invalid volume subpath %q: must be a relative path inside the volume", p)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// fromAPIMount translates one HostConfig.Mounts entry (--mount), refusing
// by name what it cannot honour.
func fromAPIMount(mm mount.Mount) (types.Mount, error) {
	m := types.Mount{Type: string(mm.Type), Source: mm.Source, Target: mm.Target, ReadOnly: mm.ReadOnly}
	switch mm.Type {
	case mount.TypeVolume:
		if mm.BindOptions != nil || mm.TmpfsOptions != nil {
			return m, badRequest("invalid mount config for type \"volume\": only VolumeOptions may be given")
		}
		if m.Source != "" && !validName.MatchString(m.Source) {
			return m, badRequest("invalid mount config for type \"volume\": invalid volume name %q", m.Source)
		}
		if o := mm.VolumeOptions; o != nil {
			m.NoCopy = o.NoCopy
			p, err := cleanSubpath(o.Subpath)
			if err != nil {
				return m, err
			}
			m.Subpath = p
			if d := o.DriverConfig; d != nil && (d.Name != "" && d.Name != "local" || len(d.Options) > 0) {
				return m, badRequest("invalid mount config: volume driver %q with options is not supported in --mount: create the volume first (docker volume create)", d.Name)
			}
		}
	case mount.TypeBind:
		if mm.VolumeOptions != nil || mm.TmpfsOptions != nil {
			return m, badRequest("invalid mount config for type \"bind\": only BindOptions may be given")
		}
		if !path.IsAbs(m.Source) {
			return m, badRequest("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", m.Source)
		}
		if o := mm.BindOptions; o != nil {
			if o.Propagation != "" && o.Propagation != mount.PropagationRPrivate {
				return m, badRequest("invalid mount config for type \"bind\": propagation %s is not supported", o.Propagation)
			}
			// CreateMountpoint (compose's create_host_path) is what the
			// node does anyway for the machine's own callers.
			if o.NonRecursive || o.ReadOnlyNonRecursive || o.ReadOnlyForceRecursive {
				return m, badRequest("invalid mount config for type \"bind\": bind-nonrecursive and bind-recursive are not supported")
			}
		}
		m.Source = path.Clean(m.Source)
	case mount.TypeTmpfs:
		if m.Source != "" {
			return m, badRequest("invalid mount config for type \"tmpfs\": Source must not be specified")
		}
		if mm.BindOptions != nil || mm.VolumeOptions != nil {
			return m, badRequest("invalid mount config for type \"tmpfs\": only TmpfsOptions may be given")
		}
		if o := mm.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return m, badRequest("invalid mount config for type \"tmpfs\": invalid tmpfs size %d", o.SizeBytes)
			}
			if len(o.Options) > 0 {
				return m, badRequest("invalid mount config for type \"tmpfs\": tmpfs-options are not supported")
			}
			m.TmpfsSize, m.TmpfsMode = o.SizeBytes, uint32(o.Mode.Perm())
		}
	case "":
		return m, badRequest("invalid mount config: mount type unknown")
	default:
		return m, badRequest("invalid mount config: mount type %q is not supported", mm.Type)
	}
	return m, nil
}

// mountPoints is the Mounts list of inspect and ps.
func (s *Server) mountPoints(p types.Pod) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range p.Spec.Mounts {
		mp := container.MountPoint{Type: mount.Type(m.Type), Destination: m.Target, RW: !m.ReadOnly, Propagation: mount.PropagationRPrivate}
		switch m.Type {
		case "volume":
			mp.Name, mp.Driver = m.Source, "local"
			if m.Driver != "" {
				mp.Driver = m.Driver
			}
			mp.Source = s.volumeMountpoint(types.Volume{Tenant: p.Tenant, Name: m.Source, Driver: mp.Driver})
			if m.Subpath != "" {
				mp.Source = path.Join(mp.Source, m.Subpath)
			}
			mp.Propagation = ""
			mp.Mode = "z"
		case "bind":
			mp.Source = m.Source
		case "tmpfs":
			mp.Propagation = "" // dockerd lists --mount type=tmpfs, not --tmpfs
		}
		out = append(out, mp)
	}
	return out
}

// volumePath is where a volume's data lives on the node.
func (s *Server) volumePath(tenant, name string) string {
	return path.Join(s.info.DataDir, "volumes", tenant, name, "_data")
}
