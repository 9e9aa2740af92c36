package compose

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// keys is a tree of the compose keys kra honours: a key maps to nil when
// everything under it is honoured, or to the keys honoured under it.
type keys map[string]keys

// all marks a key whose whole value kra honours.
var all keys = nil

var serviceKeys = keys{
	"name": all, "image": all, "command": all, "entrypoint": all,
	"environment": all, "env_file": all, "labels": all, "label_file": all,
	"depends_on": all, "restart": all, "healthcheck": all,
	"stop_grace_period": all, "stop_signal": all, "tmpfs": all,
	"read_only": all, "user": all, "working_dir": all, "init": all,
	"hostname": all, "domainname": all, "container_name": all,
	"profiles": all, "expose": all, "ports": all, "tty": all,
	"stdin_open": all, "mem_limit": all, "cpus": all, "pids_limit": all,
	"runtime": all, "pull_policy": all, "extends": all, "scale": all,
	"attach": all, "platform": all, "network_mode": all,
	"networks": {"aliases": all, "ipv4_address": all, "ipv6_address": all, "priority": all},
	"volumes": {"type": all, "source": all, "target": all, "read_only": all,
		"bind":   {"create_host_path": all},
		"volume": {"nocopy": all, "subpath": all},
		"tmpfs":  {"size": all, "mode": all}},
	"deploy": {"mode": all, "replicas": all,
		"resources":      {"limits": {"cpus": all, "memory": all, "pids": all}},
		"restart_policy": {"condition": all, "max_attempts": all}},
	// build is checked on its own (see Check).
	"build": all,
}

var networkKeys = keys{"name": all, "driver": all, "driver_opts": all, "ipam": all,
	"external": all, "internal": all, "attachable": all, "labels": all,
	"enable_ipv6": all, "enable_ipv4": all}

var volumeKeys = keys{"name": all, "driver": all, "driver_opts": all, "external": all, "labels": all}

// Check reports every key of p that kra would not honour, by name, and the
// values it cannot deploy: nothing of a compose file is ignored silently.
func Check(p *types.Project) error {
	var errs []string
	for _, name := range serviceNames(p) {
		s := p.Services[name]
		prefix := "service " + name + ": "
		bad := unsupported(reflect.ValueOf(s), serviceKeys, "")
		sort.Strings(bad)
		for _, k := range bad {
			errs = append(errs, prefix+k+" is not supported")
		}
		if s.Build != nil && s.Image == "" {
			errs = append(errs, prefix+"build is not supported, push the image with kra push and name it in image:")
		}
		if s.Image == "" && s.Build == nil {
			errs = append(errs, prefix+"no image")
		}
		if s.Deploy != nil && s.Deploy.Mode != "" && s.Deploy.Mode != "replicated" {
			errs = append(errs, prefix+"deploy.mode "+s.Deploy.Mode+" is not supported (only replicated)")
		}
		switch s.NetworkMode {
		case "", "none", "bridge", "default":
		default:
			errs = append(errs, prefix+"network_mode "+s.NetworkMode+" is not supported (only none, or networks:)")
		}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind, types.VolumeTypeVolume, types.VolumeTypeTmpfs:
			default:
				errs = append(errs, fmt.Sprintf("%svolumes: type %s (%s) is not supported", prefix, v.Type, v.Target))
			}
		}
		if s.Restart != "" {
			if _, err := restartPolicy(s); err != nil {
				errs = append(errs, prefix+err.Error())
			}
		}
	}
	for _, name := range sortedKeys(p.Networks) {
		for _, k := range unsupported(reflect.ValueOf(p.Networks[name]), networkKeys, "") {
			errs = append(errs, "network "+name+": "+k+" is not supported")
		}
	}
	for _, name := range sortedKeys(p.Volumes) {
		for _, k := range unsupported(reflect.ValueOf(p.Volumes[name]), volumeKeys, "") {
			errs = append(errs, "volume "+name+": "+k+" is not supported")
		}
	}
	for _, k := range []struct {
		name string
		n    int
	}{{"secrets", len(p.Secrets)}, {"configs", len(p.Configs)}, {"models", len(p.Models)}} {
		if k.n > 0 {
			errs = append(errs, "top-level "+k.name+" are not supported")
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// unsupported returns the dotted names of the keys set in v (a struct, a
// pointer to one, or a list or map of them) that allowed does not list.
// Extensions (x-...) are compose's own escape hatch and pass.
func unsupported(v reflect.Value, allowed keys, prefix string) []string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		var out []string
		for i := 0; i < v.Len(); i++ {
			out = appendNew(out, unsupported(v.Index(i), allowed, prefix)...)
		}
		return out
	case reflect.Map:
		var out []string
		iter := v.MapRange()
		for iter.Next() {
			out = appendNew(out, unsupported(iter.Value(), allowed, prefix)...)
		}
		sort.Strings(out)
		return out
	case reflect.Struct:
	default:
		return nil
	}
	var out []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if strings.Contains(opts, "inline") && name == "" {
			out = appendNew(out, unsupported(fv, allowed, prefix)...)
			continue
		}
		if name == "" || name == "-" || strings.HasPrefix(name, "#") || !f.IsExported() || fv.IsZero() {
			continue
		}
		sub, ok := allowed[name]
		switch {
		case !ok:
			out = appendNew(out, prefix+name)
		case sub != nil:
			out = appendNew(out, unsupported(fv, sub, prefix+name+".")...)
		}
	}
	return out
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			if l == a {
				found = true
				break
			}
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}
