package reference

import (
	"strings"
	"testing"
)

// volumeFields are the fields of `docker volume inspect` compared between
// dockerd and macro as they are; Mountpoint differs by design (macro keeps
// a tenant's volumes under DATA-DIR/volumes/<tenant>/) and is compared
// without the data roots.
var volumeFields = []string{"Driver", "Labels", "Name", "Options", "Scope"}

// testVolumes compares local volumes: create, inspect, ls, use, rm of a
// volume in use and of a missing one, prune.
func testVolumes(t *testing.T, p *pair) {
	p.cleanupBoth(t, "vol-holder")
	t.Cleanup(func() { p.both(t, "volume", "rm", "-f", "refvol", "refvol-l") })
	p.compare(t, "volume", "create", "refvol")
	p.compare(t, "volume", "create", "--label", "team=blue", "refvol-l")
	for _, name := range []string{"refvol", "refvol-l"} {
		t.Run("inspect "+name, func(t *testing.T) {
			d := newDiffs(t)
			r, m := p.mustBoth(t, "volume", "inspect", name)
			rv, mv := decodeOne(t, "dockerd", r), decodeOne(t, "macro", m)
			for _, f := range volumeFields {
				d.equal(f, rv[f], mv[f])
			}
			rmp, _ := rv["Mountpoint"].(string)
			mmp, _ := mv["Mountpoint"].(string)
			// dockerd: <dir>/root/volumes/NAME/_data; macro:
			// <dir>/volumes/default/NAME/_data (per tenant).
			d.equal("Mountpoint", strings.Replace(p.norm(rmp), "<dir>/root/volumes/", "<dir>/volumes/", 1), strings.Replace(p.norm(mmp), "<dir>/volumes/default/", "<dir>/volumes/", 1))
			for k := range rv {
				if _, ok := mv[k]; !ok {
					d.addf("field %s of dockerd's volume inspect is missing in macro's", k)
				}
			}
			d.done()
		})
	}
	t.Run("ls", func(t *testing.T) { p.compare(t, "volume", "ls", "--format", "{{.Driver}} {{.Name}} {{.Labels}}") })
	t.Run("ls filter", func(t *testing.T) { p.compare(t, "volume", "ls", "-q", "--filter", "label=team=blue") })
	t.Run("use", func(t *testing.T) {
		p.compare(t, "run", "--rm", "--network", "none", "-v", "refvol:/d", "busybox", "sh", "-c", "echo x > /d/f && cat /d/f")
		p.compare(t, "run", "--rm", "--network", "none", "-v", "refvol:/d:ro", "busybox", "sh", "-c", "cat /d/f; touch /d/g")
	})
	t.Run("rm in use", func(t *testing.T) {
		p.mustBoth(t, "run", "-d", "--network", "none", "--name", "vol-holder", "-v", "refvol:/d", "busybox", "sleep", "1000")
		p.compare(t, "volume", "rm", "refvol")
		p.mustBoth(t, "rm", "-f", "vol-holder")
	})
	t.Run("inspect missing", func(t *testing.T) { p.compare(t, "volume", "inspect", "nosuchvol") })
	t.Run("rm missing", func(t *testing.T) { p.compare(t, "volume", "rm", "nosuchvol") })
	t.Run("rm -f missing", func(t *testing.T) { p.compare(t, "volume", "rm", "-f", "nosuchvol") })
	t.Run("invalid name", func(t *testing.T) { p.compare(t, "volume", "create", "bad/name") })
}

// networkFields are the fields of `docker network inspect` of a created
// network compared between dockerd and macro.
var networkFields = []string{"Name", "Scope", "Driver", "EnableIPv6", "Internal", "Attachable", "Ingress", "ConfigOnly", "Labels", "IPAM.Driver", "IPAM.Config"}

// testNetworks compares what compose and the docker CLI see of a user
// network: create (with IPAM), inspect, rm, and the errors for missing
// ones. dockerd runs without a bridge here, so the network exists but
// nothing is attached to it.
func testNetworks(t *testing.T, p *pair) {
	t.Cleanup(func() { p.both(t, "network", "rm", "refnet", "refnet-ipam") })
	p.mustBoth(t, "network", "create", "--label", "com.docker.compose.project=ref", "refnet")
	p.mustBoth(t, "network", "create", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.1", "refnet-ipam")
	for _, name := range []string{"refnet", "refnet-ipam"} {
		t.Run("inspect "+name, func(t *testing.T) {
			d := newDiffs(t)
			r, m := p.mustBoth(t, "network", "inspect", name)
			rv, mv := decodeOne(t, "dockerd", r), decodeOne(t, "macro", m)
			for _, f := range networkFields {
				a, _ := field(rv, f)
				b, _ := field(mv, f)
				if f == "IPAM.Config" && name == "refnet" {
					continue // dockerd picks a subnet from its pools; macro leaves it to the overlay
				}
				d.equal(f, a, b)
			}
			for k := range rv {
				if _, ok := mv[k]; !ok {
					d.addf("field %s of dockerd's network inspect is missing in macro's", k)
				}
			}
			d.done()
		})
	}
	t.Run("duplicate", func(t *testing.T) { p.compare(t, "network", "create", "refnet") })
	t.Run("inspect missing", func(t *testing.T) { p.compare(t, "network", "inspect", "nosuchnet") })
	t.Run("rm missing", func(t *testing.T) { p.compare(t, "network", "rm", "nosuchnet") })
	t.Run("ls filter", func(t *testing.T) {
		p.compare(t, "network", "ls", "--filter", "label=com.docker.compose.project=ref", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
	})
}
