package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/api/docker"
	"github.com/macro-cloud/macro/internal/testimages"
	"github.com/macro-cloud/macro/registry"
)

// TestIsolationSweep is issue 3's isolation sweep: tenant A makes real
// objects of every kind (a running container with logs, a stopped one, an
// exec session, a loaded and tagged image, a namespace, a pushed registry
// repository, an open blob upload), then every route of every router of
// the API port (docker.Server.Routes, api.Server.Routes and AdminRoutes,
// registry.Routes) is called with A's identifiers in its parameters, as
// tenant B and without credentials. B must get 404 for A's objects (or a
// listing without them, or 401/403/404 where the endpoint is not B's to
// call); no credentials must get 401 (or no TLS session for the Docker
// API); and no answer, body or header, may carry any of A's identifiers
// that the request did not name itself. Afterwards, A's objects are all
// still there: B's DELETE, kill, prune and rename did nothing to them.
//
// The routes come from the routers, so a new endpoint joins the sweep by
// itself; one whose parameters or expectations are not in the tables
// below fails the test, with a message that says which table to extend.
func TestIsolationSweep(t *testing.T) {
	c := newTenantCloud(t)
	const tenantA, tenantB = "sweep-alpha", "sweep-beta"
	c.mustAdmin("tenant", "create", tenantA)
	c.mustAdmin("tenant", "create", tenantB)
	tokenA := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", tenantA))
	tokenB := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", tenantB))
	dirA, st, msg := c.certs(tokenA)
	if dirA == "" {
		t.Fatalf("certs of A: %d %s", st, msg)
	}
	dirB, st, msg := c.certs(tokenB)
	if dirB == "" {
		t.Fatalf("certs of B: %d %s", st, msg)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	a := &sweepClient{name: "A", base: "https://" + c.addr, token: tokenA, tls: certTLS(t, pool, dirA)}
	b := &sweepClient{name: "B", base: "https://" + c.addr, token: tokenB, tls: certTLS(t, pool, dirB)}
	none := &sweepClient{name: "no credentials", base: "https://" + c.addr, tls: &tls.Config{RootCAs: pool}}

	// --- A's objects ---
	const (
		logMarker  = "ALPHA-SECRET-LOG-7f3a9c"
		imgName    = "alpha-secret-img"
		running    = "alpha-running-ctr"
		stopped    = "alpha-stopped-ctr"
		nsName     = "alpha-secret-ns"
		repoName   = "alpha-pushed-repo"
		execMarker = "ALPHA-EXEC-MARKER-51d2"
		domainName = "alpha-secret-shop.example"
		hostMarker = "alpha-secret-host"
		volName    = "alpha-secret-vol"
		snapVol    = "alpha-secret-files" // an nfs volume, with snapshot snapName
		snapName   = "alpha-secret-snap"
		netName    = "alpha-secret-net"
	)
	mustDockerA := func(args ...string) string {
		t.Helper()
		r := c.docker(dirA, args...)
		if r.ExitCode != 0 {
			t.Fatalf("docker %s as A: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Combined())
		}
		return strings.TrimSpace(r.Stdout)
	}
	mustDockerA("load", "-i", testimages.Busybox(t))
	mustDockerA("tag", "busybox:latest", imgName+":v1")
	imageID := mustDockerA("image", "inspect", "--format", "{{.Id}}", imgName+":v1")
	runningID := mustDockerA("run", "-d", "--name", running, "-l", "kr.ingress.80=https://"+hostMarker+".example", imgName+":v1", "sh", "-c", "echo "+logMarker+"; exec sleep 300")
	mustDockerA("run", "--name", stopped, imgName+":v1", "sh", "-c", "echo "+logMarker+"-stopped")
	stoppedID := mustDockerA("inspect", "--format", "{{.Id}}", stopped)
	mustDockerA("volume", "create", volName)
	mustDockerA("volume", "create", "--driver", "nfs", "-o", "snapshot=off", snapVol)
	netID := mustDockerA("network", "create", "--subnet", "10.77.0.0/24", netName)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(mustDockerA("logs", running), logMarker) {
		if time.Now().After(deadline) {
			t.Fatalf("the running container never logged its marker")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := a.do(t, "docker", "POST", "/containers/"+runningID+"/exec", `{"Cmd":["sh","-c","echo `+execMarker+`; sleep 300"],"AttachStdout":true}`, nil)
	var execResp struct{ Id string }
	if json.Unmarshal(r.body, &execResp); r.status != http.StatusCreated || execResp.Id == "" {
		t.Fatalf("exec create as A: %d %s", r.status, r.body)
	}
	execID := execResp.Id
	if r := a.do(t, "docker", "POST", "/exec/"+execID+"/start", `{"Detach":true}`, nil); r.status >= 300 {
		t.Fatalf("exec start as A: %d %s", r.status, r.body)
	}
	if r := a.do(t, "native", "POST", api.Prefix+"/namespaces", `{"name":"`+nsName+`"}`, nil); r.status != http.StatusCreated {
		t.Fatalf("namespace create as A: %d %s", r.status, r.body)
	}
	if r := a.do(t, "native", "POST", api.Prefix+"/domains", `{"name":"`+domainName+`"}`, nil); r.status != http.StatusCreated {
		t.Fatalf("domain claim as A: %d %s", r.status, r.body)
	}
	if r := a.do(t, "native", "POST", api.Prefix+"/volumes/"+snapVol+"/snapshots", `{"name":"`+snapName+`"}`, nil); r.status != http.StatusCreated {
		t.Fatalf("snapshot as A: %d %s", r.status, r.body)
	}
	var volKey struct{ ID string }
	if r := a.do(t, "native", "POST", api.Prefix+"/volumekeys", `{"volume":"`+volName+`"}`, nil); r.status != http.StatusCreated || json.Unmarshal(r.body, &volKey) != nil {
		t.Fatalf("volume key create as A: %d %s", r.status, r.body)
	}
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(c.addr + "/" + repoName + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "a", Password: tokenA}),
		remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})); err != nil {
		t.Fatalf("push as A: %v", err)
	}
	manifestDigest, _ := img.Digest()
	manifestRaw, _ := img.RawManifest()
	configDigest, _ := img.ConfigName()
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()
	r = a.do(t, "registry", "POST", "/v2/"+repoName+"/blobs/uploads/", "", nil)
	uploadUUID := r.header.Get("Docker-Upload-UUID")
	if r.status != http.StatusAccepted || uploadUUID == "" {
		t.Fatalf("upload start as A: %d %s", r.status, r.body)
	}

	// Everything of A that B must never see, and the tenant name too.
	hexOf := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	markers := map[string]string{
		"running container ID": runningID, "running container short ID": runningID[:12], "running container name": running,
		"stopped container ID": stoppedID, "stopped container name": stopped,
		"log marker": logMarker, "exec ID": execID, "exec marker": execMarker,
		"image ID": hexOf(imageID), "image short ID": hexOf(imageID)[:12], "image name": imgName,
		"namespace": nsName, "repository": repoName, "manifest digest": manifestDigest.Hex,
		"config digest": configDigest.Hex, "layer digest": layerDigest.Hex, "upload UUID": uploadUUID,
		"tenant name": tenantA, "token ID": tokenA[3:19],
		"custom domain": domainName, "ingress host": hostMarker,
		"volume": volName, "volume key": volKey.ID, "network": netName, "network ID": netID, "network short ID": netID[:12],
	}

	// The leak detector's control: A's own listing carries the markers.
	if r := a.do(t, "docker", "GET", "/containers/json?all=1", "", nil); !bytes.Contains(r.body, []byte(runningID)) || !bytes.Contains(r.body, []byte(stopped)) {
		t.Fatalf("A's own docker ps does not show its containers: %d %s", r.status, r.body)
	}

	// The node that runs A's pods, and the control of B's node listing:
	// A's own counts its pods.
	var nodesA []api.Node
	if r := a.do(t, "native", "GET", api.Prefix+"/nodes", "", nil); r.status != http.StatusOK || json.Unmarshal(r.body, &nodesA) != nil || len(nodesA) == 0 || nodesA[0].Pods == 0 {
		t.Fatalf("A's own GET /nodes does not count its pods: %d %s", r.status, r.body)
	}
	nodeName := nodesA[0].Name

	// --- the parameter tables ---
	// params fills a route's parameters: the key is the parameter with the
	// path element before it ("containers/{id}"), so that the same name in
	// another place needs its own entry.
	params := map[string][]string{
		"containers/{id}":       {runningID, running, runningID[:12], stoppedID, stopped},
		"exec/{id}":             {execID},
		"images/{name...}":      {imgName + ":v1", imgName, imageID, hexOf(imageID)[:12], c.addr + "/" + repoName + ":v1"},
		"namespaces/{name}":     {nsName},
		"domains/{name}":        {domainName},
		"overlays/{ref...}":     {netName, "default/" + netName, netID},
		"tenants/{name}":        {tenantA},
		"tokens/{id}":           {tokenA[3:19]},
		"v2/{name}":             {repoName, imgName, "beta-own-repo"},
		"manifests/{reference}": {"v1", manifestDigest.String()},
		"blobs/{digest}":        {layerDigest.String(), configDigest.String()},
		"uploads/{uuid}":        {uploadUUID},
		"volumes/{name}":        {volName, snapVol},
		"snapshots/{snap}":      {snapName},
		"nodes/{name}":          {nodeName},
		"volumekeys/{id}":       {volKey.ID},
		"networks/{id}":         {netID, netName, netID[:12]},
		"networks/{id...}":      {netID, netName, netID[:12], "default/" + netName},
		"join-tokens/{id}":      {"0123456789abcdef"},
		"members/{name}":        {"macro"},
	}
	// imageOps are the operations of the image routes, whose {name...}
	// ends with the operation.
	// A push answers 501 before it looks the image up when the image's
	// name is not of this registry (push there with kra or crane).
	imageOps := map[string][]imageOp{
		"GET":    {{"/json", 0}, {"/history", 0}, {"/get", 0}},
		"POST":   {{"/tag?repo=beta-stolen&tag=v1", 0}, {"/push", wantNotFoundOr501}},
		"DELETE": {{"", 0}, {"?force=1", 0}},
	}
	// extras are the query and body a route needs to reach its lookup.
	extras := map[string]struct{ query, body string }{
		"docker POST /containers/{id}/rename":            {query: "name=beta-renamed"},
		"docker POST /containers/{id}/kill":              {query: "signal=KILL"},
		"docker POST /containers/{id}/update":            {body: `{"Memory":8388608}`},
		"docker GET /containers/{id}/logs":               {query: "stdout=1&stderr=1&follow=1&timestamps=1"},
		"docker POST /containers/{id}/attach":            {query: "stream=1&stdout=1&stderr=1&logs=1"},
		"docker POST /containers/{id}/resize":            {query: "h=10&w=10"},
		"docker GET /containers/{id}/stats":              {query: "stream=1"},
		"docker HEAD /containers/{id}/archive":           {query: "path=/etc/hostname"},
		"docker GET /containers/{id}/archive":            {query: "path=/etc/hostname"},
		"docker PUT /containers/{id}/archive":            {query: "path=/tmp", body: string(make([]byte, 1024))},
		"docker DELETE /containers/{id}":                 {query: "force=1&v=1"},
		"docker POST /containers/{id}/exec":              {body: `{"Cmd":["true"],"AttachStdout":true}`},
		"docker POST /exec/{id}/start":                   {body: `{"Detach":false,"Tty":false}`},
		"docker POST /exec/{id}/resize":                  {query: "h=10&w=10"},
		"docker POST /containers/{id}/stop":              {query: "t=0"},
		"docker POST /containers/{id}/restart":           {query: "t=0"},
		"docker POST /containers/{id}/wait":              {query: "condition=not-running"},
		"registry PATCH /v2/{name}/blobs/uploads/{uuid}": {body: "stolen"},
		"registry PUT /v2/{name}/blobs/uploads/{uuid}":   {query: "digest=" + layerDigest.String()},
		"registry PUT /v2/{name}/manifests/{reference}":  {body: string(manifestRaw)},
		"docker POST /networks/{id}/connect":             {body: `{"Container":"` + runningID + `"}`},
		"docker POST /networks/{id}/disconnect":          {body: `{"Container":"` + runningID + `","Force":true}`},
	}
	now := time.Now().Unix() + 1
	netCreates := 0
	// fixed are the calls of routes without parameters: B's own listings,
	// creations and the like. want says what B must get.
	fixed := map[string][]sweepCall{
		"docker GET /_ping":           {{want: wantOK}},
		"docker HEAD /_ping":          {{want: wantOK}},
		"docker GET /version":         {{want: wantOK}},
		"docker GET /info":            {{want: wantOK, check: zeroCounts}},
		"docker GET /events":          {{path: fmt.Sprintf("/events?since=0&until=%d", now), want: wantOK}},
		"docker GET /system/df":       {{want: wantOK}},
		"docker GET /containers/json": {{path: "/containers/json?all=1&size=1", want: wantOK}},
		"docker GET /images/json":     {{path: "/images/json?all=1&digests=1", want: wantOK}},
		"docker POST /containers/create": {
			{path: "/containers/create", body: `{"Image":"` + imgName + `:v1","Cmd":["true"]}`, want: wantNotFound},
			{path: "/containers/create", body: `{"Image":"` + imageID + `","Cmd":["true"]}`, want: wantNotFound},
		},
		"docker POST /containers/prune": {{want: wantOK}},
		"docker GET /images/get": {
			{path: "/images/get?names=" + url.QueryEscape(imgName+":v1"), want: wantNotFound},
			{path: "/images/get?names=" + url.QueryEscape(imageID), want: wantNotFound},
		},
		"docker POST /images/load":    {{body: "not a tarball", want: wantRefused}},
		"docker GET /volumes":         {{want: wantOK}},
		"docker GET /networks":        {{want: wantOK}},
		"docker POST /volumes/prune":  {{path: "/volumes/prune?filters=" + url.QueryEscape(`{"all":["true"]}`), want: wantOK}},
		"docker POST /networks/prune": {{want: wantOK}},
		// B may name a volume or network as A did (names are per tenant);
		// a 409 would tell B that A's exists. B's are removed again.
		"docker POST /volumes/create": {{body: `{"Name":"` + volName + `"}`, want: wantOK, cleanup: func(t *testing.T) {
			if r := b.do(t, "docker", "DELETE", "/volumes/"+volName, "", nil); r.status != http.StatusNoContent {
				t.Errorf("B deleting its own volume %s: %d %s", volName, r.status, r.body)
			}
		}}},
		// The sweep calls twice (with and without the version prefix): the
		// first must create B's own network, the second finds B's.
		"docker POST /networks/create": {{body: `{"Name":"` + netName + `"}`, want: wantAny, check: func(t *testing.T, route string, r sweepResult) {
			if netCreates++; netCreates == 1 && r.status != http.StatusCreated {
				t.Errorf("%s as B with A's network name: %d %s, want 201", route, r.status, r.body)
			}
		}, cleanup: func(t *testing.T) {
			if r := b.do(t, "docker", "DELETE", "/networks/"+netName, "", nil); r.status != http.StatusNoContent {
				t.Errorf("B deleting its own network %s: %d %s", netName, r.status, r.body)
			}
		}}},
		"docker POST /images/prune": {{path: "/images/prune?filters=" + url.QueryEscape(`{"dangling":["false"]}`), want: wantOK}},
		"docker POST /images/create": {
			{path: "/images/create?fromImage=" + url.QueryEscape(c.addr+"/"+repoName) + "&tag=v1", want: wantPullFails},
			{path: "/images/create?fromImage=" + url.QueryEscape(c.addr+"/"+imgName) + "&tag=v1", want: wantPullFails},
		},
		"docker POST /auth": {{body: `{"username":"x","password":"` + tokenA[:10] + `","serveraddress":"` + c.addr + `"}`, want: wantNoLeak}},
		"docker /": {
			{method: "GET", path: "/containers/" + runningID + "/no-such-operation", want: wantNotFound},
		},
		"native GET /apis/macro/v1/ca":         {{want: wantOK, noneWant: wantOK}},
		"native GET /apis/macro/v1/whoami":     {{want: wantOK}},
		"native POST /apis/macro/v1/certs":     {{body: "{}", want: wantOK}},
		"native GET /apis/macro/v1/namespaces": {{want: wantOK}},
		// B may name a namespace as A did (names are per tenant); a 409
		// would tell B that A's exists. The namespace is removed again.
		"native POST /apis/macro/v1/namespaces": {{body: `{"name":"` + nsName + `"}`, want: wantOK, cleanup: func(t *testing.T) {
			if r := b.do(t, "native", "DELETE", api.Prefix+"/namespaces/"+nsName, "", nil); r.status != http.StatusNoContent {
				t.Errorf("B deleting its own namespace %s: %d %s", nsName, r.status, r.body)
			}
		}}},
		"native GET /apis/macro/v1/ingresses": {{want: wantOK}},
		"native GET /apis/macro/v1/volumes":   {{want: wantOK}},
		// As with docker volume create: B's own volume of A's name.
		"native POST /apis/macro/v1/volumes": {{body: `{"name":"` + volName + `"}`, want: wantOK, cleanup: func(t *testing.T) {
			if r := b.do(t, "native", "DELETE", api.Prefix+"/volumes/"+volName, "", nil); r.status != http.StatusNoContent {
				t.Errorf("B deleting its own volume %s: %d %s", volName, r.status, r.body)
			}
		}}},
		"native GET /apis/macro/v1/domains": {{want: wantOK}},
		"native GET /apis/macro/v1/volumekeys": {
			{want: wantOK},
			{path: api.Prefix + "/volumekeys?volume=" + volName, want: wantNotFound},
		},
		"native POST /apis/macro/v1/volumekeys": {{body: `{"volume":"` + volName + `"}`, want: wantNotFound}},
		"native GET /apis/macro/v1/vpc":         {{want: wantOK}},
		"native GET /apis/macro/v1/overlays":    {{want: wantOK}},
		// A domain is held by one tenant: B is told so (409) when it claims
		// A's, the one thing a domain's owner cannot keep to itself. B's
		// own claim works and is removed again.
		"native POST /apis/macro/v1/domains": {
			{body: `{"name":"` + domainName + `"}`, want: wantRefused},
			{body: `{"name":"beta-own.example"}`, want: wantOK, cleanup: func(t *testing.T) {
				if r := b.do(t, "native", "DELETE", api.Prefix+"/domains/beta-own.example", "", nil); r.status != http.StatusNoContent {
					t.Errorf("B deleting its own domain: %d %s", r.status, r.body)
				}
			}},
		},
		"native-admin GET /apis/macro/v1/tenants":  {{want: wantRefused}},
		"native-admin POST /apis/macro/v1/tenants": {{body: `{"name":"beta-made"}`, want: wantRefused}},
		"native-admin GET /apis/macro/v1/ca":       {{want: wantOK, noneWant: wantOK}},
		// Joining takes a server join token, never a tenant's credentials.
		"native POST /apis/macro/v1/cluster/join":      {{body: `{"name":"beta","peerURL":"https://192.0.2.1:2380"}`, want: wantUnauthorized}},
		"native-admin GET /apis/macro/v1/join-tokens":  {{want: wantRefused}},
		"native-admin POST /apis/macro/v1/join-tokens": {{body: `{"kind":"server"}`, want: wantRefused}},
		"native-admin GET /apis/macro/v1/members":      {{want: wantRefused}},
		"registry GET /v2/token":                       {{want: wantOK}},
		"registry GET /v2/":                            {{want: wantOK}},
		"registry HEAD /v2/":                           {{want: wantOK}},
		"registry GET /v2/_catalog":                    {{want: wantOK}},
		// B's own upload in a repository named as A's: a new upload (202),
		// not a mount of A's blob (201).
		"registry POST /v2/{name}/blobs/uploads/": {
			{path: "/v2/" + repoName + "/blobs/uploads/?mount=" + layerDigest.String() + "&from=" + repoName, want: wantNoMount},
			{path: "/v2/beta-own-repo/blobs/uploads/?mount=" + configDigest.String(), want: wantNoMount},
			{path: "/v2/beta-own-repo/blobs/uploads/?digest=" + layerDigest.String(), body: "not the blob", want: wantRefused},
		},

		// Nodes are the cloud's, not a tenant's: B sees them with none of
		// A's pods (the admin's GET /nodes is not on the API port: there
		// the same path is the tenant's view).
		"native GET /apis/macro/v1/nodes":       {{want: wantOK, check: noPodsOfA}},
		"native-admin GET /apis/macro/v1/nodes": {{want: wantOK, check: noPodsOfA}},
	}
	// wants overrides wantNotFound for routes with parameters.
	wants := map[string]want{
		// A's manifest pushed as B is refused: B has not the blobs.
		"registry PUT /v2/{name}/manifests/{reference}":                 wantRefused,
		"native-admin GET /apis/macro/v1/tenants/{name}":                wantRefused,
		"native-admin GET /apis/macro/v1/tenants/{name}/tokens":         wantRefused,
		"native-admin POST /apis/macro/v1/tenants/{name}/tokens":        wantRefused,
		"native-admin DELETE /apis/macro/v1/tenants/{name}/tokens/{id}": wantRefused,
		"native-admin DELETE /apis/macro/v1/join-tokens/{id}":           wantRefused,
		"native-admin DELETE /apis/macro/v1/members/{name}":             wantRefused,
		"native-admin DELETE /apis/macro/v1/nodes/{name}":               wantRefused,
	}
	// skips are known leaks, each reported (see the commit and issue 3).
	skips := map[string]string{}

	// --- the routes, from the routers ---
	var routes []string
	for _, rt := range docker.New(docker.Config{}).Routes() {
		routes = append(routes, "docker "+rt)
	}
	native := api.New(api.Config{})
	for _, rt := range native.Routes() {
		routes = append(routes, "native "+rt)
	}
	for _, rt := range native.AdminRoutes() {
		routes = append(routes, "native-admin "+rt)
	}
	for _, rt := range registry.Routes() {
		routes = append(routes, "registry "+rt)
	}
	opWants := map[string]want{}
	paramRE := regexp.MustCompile(`([^/]*)/(\{[^}]*\})`)
	used := map[string]bool{}
	swept := 0
	for _, route := range routes {
		router, rest, _ := strings.Cut(route, " ")
		method, pattern, ok := strings.Cut(rest, " ")
		if !ok { // a pattern without a method ("/")
			method, pattern = "", rest
		}
		calls, isFixed := fixed[route]
		used[route] = isFixed
		if !isFixed {
			ms := paramRE.FindAllStringSubmatch(pattern, -1)
			if len(ms) == 0 {
				t.Errorf("route %q has no entry in the isolation sweep: add what tenant B must get from it to the table `fixed` in e2e/isolation_test.go", route)
				continue
			}
			paths := []string{pattern}
			for _, m := range ms {
				key := m[1] + "/" + m[2]
				vals, ok := params[key]
				if !ok {
					t.Errorf("route %q: the isolation sweep has no values for parameter %s: add tenant A's identifiers for it to the table `params` in e2e/isolation_test.go", route, key)
					paths = nil
					break
				}
				var next []string
				for _, p := range paths {
					for _, v := range vals {
						next = append(next, strings.Replace(p, m[2], escapePath(v), 1))
					}
				}
				paths = next
			}
			if strings.HasSuffix(pattern, "{name...}") && len(paths) > 0 {
				ops, ok := imageOps[method]
				if !ok {
					t.Errorf("route %q: the isolation sweep knows no operation of %s /images/{name...}: add it to the table `imageOps` in e2e/isolation_test.go", route, method)
					continue
				}
				var next []string
				for _, p := range paths {
					for _, op := range ops {
						next = append(next, p+op.op)
						if op.want != 0 {
							opWants[p+op.op] = op.want
						}
					}
				}
				paths = next
			}
			ex := extras[route]
			used[route] = true
			w, ok := wants[route]
			if !ok {
				w = wantNotFound
			}
			for _, p := range paths {
				cw := w
				if ow, ok := opWants[p]; ok {
					cw = ow
				}
				if ex.query != "" {
					sep := "?"
					if strings.Contains(p, "?") {
						sep = "&"
					}
					p += sep + ex.query
				}
				calls = append(calls, sweepCall{path: p, body: ex.body, want: cw})
			}
		}
		if !isFixed && len(calls) > 0 && router != "native-admin" && (method == "GET" || method == "HEAD") {
			// The control: A, whose objects these are, gets one of them.
			// Otherwise the parameters do not name A's objects and B's
			// 404s prove nothing.
			reached := false
			for _, call := range calls {
				if res := a.do(t, router, method, call.path, call.body, nil); res.err == nil && res.status < 400 {
					reached = true
					break
				}
			}
			if !reached {
				t.Errorf("control: %s answers none of A's own calls with success: the sweep's parameters for it do not name A's objects (tables `params`, `extras` in e2e/isolation_test.go)", route)
			}
		}
		for i, call := range calls {
			if call.method == "" {
				call.method = method
			}
			if call.path == "" {
				call.path = pattern
			}
			name := fmt.Sprintf("%s/%d", route, i)
			if why, ok := skips[route]; ok {
				t.Run(name, func(t *testing.T) { t.Skip("LEAK: " + why + " — reported") })
				continue
			}
			swept++
			variants := []string{""}
			if router == "docker" {
				variants = append(variants, "/v"+docker.APIVersion)
			}
			for _, prefix := range variants {
				res := b.do(t, router, call.method, prefix+call.path, call.body, nil)
				checkSweep(t, route, "B", call, call.want, res, markers)
				if call.check != nil {
					call.check(t, route, res)
				}
			}
			if call.cleanup != nil {
				call.cleanup(t)
			}
			if i == 0 || router != "docker" {
				res := none.do(t, router, call.method, call.path, call.body, nil)
				nw := call.noneWant
				if nw == 0 {
					nw = wantUnauthorized
					if router == "native-admin" {
						nw = wantRefused
					}
				}
				checkSweep(t, route, "no credentials", call, nw, res, markers)
			}
		}
	}
	var stale []string
	for k := range fixed {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	for k := range extras {
		if _, ok := used[k]; !ok {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, k := range stale {
		t.Errorf("the isolation sweep's tables name %q, which no router serves any more: remove it from e2e/isolation_test.go", k)
	}
	t.Logf("swept %d routes, %d calls", len(routes), swept)

	// B's listings, after all of B's calls, still show nothing of A's.
	for _, p := range []string{"/containers/json?all=1", "/images/json?all=1", "/system/df", "/volumes", "/networks", fmt.Sprintf("/events?since=0&until=%d", time.Now().Unix()+1)} {
		checkSweep(t, "after the sweep: docker GET "+p, "B", sweepCall{method: "GET", path: p}, wantOK, b.do(t, "docker", "GET", p, "", nil), markers)
	}
	for _, p := range []string{api.Prefix + "/namespaces", api.Prefix + "/ingresses", api.Prefix + "/domains", api.Prefix + "/overlays"} {
		checkSweep(t, "after the sweep: native GET "+p, "B", sweepCall{method: "GET", path: p}, wantOK, b.do(t, "native", "GET", p, "", nil), markers)
	}
	checkSweep(t, "after the sweep: registry GET /v2/_catalog", "B", sweepCall{method: "GET", path: "/v2/_catalog"}, wantOK, b.do(t, "registry", "GET", "/v2/_catalog", "", nil), markers)

	// A's objects are untouched.
	if out := mustDockerA("inspect", "--format", "{{.Name}} {{.State.Running}}", runningID); out != "/"+running+" true" {
		t.Errorf("A's running container after B's sweep: %q", out)
	}
	if out := mustDockerA("inspect", "--format", "{{.Name}} {{.State.Running}}", stoppedID); out != "/"+stopped+" false" {
		t.Errorf("A's stopped container after B's sweep: %q", out)
	}
	if out := mustDockerA("image", "inspect", "--format", "{{.Id}}", imgName+":v1"); out != imageID {
		t.Errorf("A's image after B's sweep: %q", out)
	}
	if r := a.do(t, "docker", "GET", "/exec/"+execID+"/json", "", nil); r.status != http.StatusOK {
		t.Errorf("A's exec session after B's sweep: %d %s", r.status, r.body)
	}
	if out := mustDockerA("volume", "inspect", "--format", "{{.Name}}", volName); out != volName {
		t.Errorf("A's volume after B's sweep: %q", out)
	}
	if r := a.do(t, "native", "GET", api.Prefix+"/volumes/"+snapVol+"/snapshots", "", nil); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(snapName)) {
		t.Errorf("A's snapshot after B's sweep: %d %s", r.status, r.body)
	}
	if out := mustDockerA("network", "inspect", "--format", "{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", netName); out != netID+" 10.77.0.0/24" {
		t.Errorf("A's network after B's sweep: %q", out)
	}
	if r := a.do(t, "native", "GET", api.Prefix+"/namespaces/"+nsName, "", nil); r.status != http.StatusOK {
		t.Errorf("A's namespace after B's sweep: %d %s", r.status, r.body)
	}
	if r := a.do(t, "native", "GET", api.Prefix+"/domains/"+domainName, "", nil); r.status != http.StatusOK {
		t.Errorf("A's domain after B's sweep: %d %s", r.status, r.body)
	}
	if r := a.do(t, "native", "GET", api.Prefix+"/volumekeys?volume="+volName, "", nil); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(volKey.ID)) {
		t.Errorf("A's volume key after B's sweep: %d %s", r.status, r.body)
	}
	if r := a.do(t, "registry", "GET", "/v2/"+repoName+"/manifests/v1", "", map[string]string{"Accept": mustMediaType(t, img)}); r.status != http.StatusOK {
		t.Errorf("A's repository after B's sweep: %d %s", r.status, r.body)
	}
	if r := a.do(t, "registry", "GET", "/v2/"+repoName+"/blobs/uploads/"+uploadUUID, "", nil); r.status != http.StatusNoContent || r.header.Get("Range") != "0-0" {
		t.Errorf("A's upload after B's sweep: %d %q %s", r.status, r.header.Get("Range"), r.body)
	}
}

type want int

const (
	wantNotFound      want = iota + 1 // 404
	wantOK                            // 2xx: B's own answer
	wantRefused                       // 4xx
	wantUnauthorized                  // 401, or no TLS session (Docker API)
	wantAny                           // any status but 5xx
	wantNoMount                       // a new upload (202), not a mount (201)
	wantPullFails                     // the pull fails, in the status or in the stream
	wantNotFoundOr501                 // 404, or 501 for what macro does not do
	wantNoLeak                        // any status: only the leak check
)

// imageOp is an operation of the image routes and, when not 0, what B
// must get from it.
type imageOp struct {
	op   string
	want want
}

func (w want) String() string {
	return map[want]string{wantNotFound: "404", wantOK: "2xx", wantRefused: "4xx", wantUnauthorized: "401",
		wantAny: "any status but 5xx", wantNoMount: "202 (a new upload, not a mount)", wantPullFails: "a failed pull",
		wantNotFoundOr501: "404 or 501", wantNoLeak: "any status"}[w]
}

// sweepCall is one request of the sweep.
type sweepCall struct {
	method, path, body string
	want               want // what B must get
	noneWant           want // what no credentials get (wantUnauthorized)
	check              func(t *testing.T, route string, r sweepResult)
	cleanup            func(t *testing.T)
}

type sweepResult struct {
	status int
	err    error // the request failed (TLS handshake, timeout before headers)
	header http.Header
	body   []byte
}

// sweepClient calls the API port as a tenant (client certificate for the
// Docker API, token for the native API and the registry) or without
// credentials.
type sweepClient struct {
	name, base, token string
	tls               *tls.Config
}

func certTLS(t *testing.T, pool *x509.CertPool, dir string) *tls.Config {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
}

// do sends one request and reads the answer for at most 3 s: streams
// (logs -f, events, attach, stats, wait) are cut there.
func (c *sweepClient) do(t *testing.T, router, method, path, body string, hdr map[string]string) sweepResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	tlsCfg := c.tls
	if router != "docker" && c.token != "" {
		if router == "registry" {
			req.SetBasicAuth(c.name, c.token) // what docker, crane and skopeo send
		} else {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		tlsCfg = &tls.Config{RootCAs: c.tls.RootCAs} // the token alone
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return sweepResult{err: err}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	io.Copy(&buf, io.LimitReader(resp.Body, 8<<20)) // a cut stream ends in an error: keep what came
	return sweepResult{status: resp.StatusCode, header: resp.Header, body: buf.Bytes()}
}

// checkSweep checks one answer against w, and that it carries none of A's
// identifiers that the request did not name.
func checkSweep(t *testing.T, route, who string, call sweepCall, w want, r sweepResult, markers map[string]string) {
	t.Helper()
	what := fmt.Sprintf("%s: %s %s as %s", route, call.method, call.path, who)
	body := r.body
	if len(body) > 600 {
		body = append(body[:600:600], "..."...)
	}
	if r.err != nil {
		if w == wantUnauthorized && strings.HasPrefix(route, "docker ") {
			return // no client certificate, no TLS session: fine
		}
		t.Errorf("%s: %v (want %v)", what, r.err, w)
		return
	}
	ok := false
	switch w {
	case wantNotFound:
		ok = r.status == http.StatusNotFound
	case wantOK:
		ok = r.status >= 200 && r.status < 300
	case wantRefused:
		ok = r.status >= 400 && r.status < 500
	case wantUnauthorized:
		ok = r.status == http.StatusUnauthorized
	case wantAny:
		ok = r.status < 500
	case wantNoMount:
		ok = r.status == http.StatusAccepted
	case wantNotFoundOr501:
		ok = r.status == http.StatusNotFound || r.status == http.StatusNotImplemented
	case wantNoLeak:
		ok = true
	case wantPullFails:
		ok = r.status >= 400 || bytes.Contains(r.body, []byte(`"error"`))
	}
	if !ok {
		t.Errorf("%s: got %d, want %v\n%s", what, r.status, w, body)
	}
	var hdr strings.Builder
	r.header.Write(&hdr)
	request := call.path + "\n" + call.body
	for label, m := range markers {
		if m == "" || strings.Contains(request, m) || strings.Contains(request, url.PathEscape(m)) || strings.Contains(request, url.QueryEscape(m)) {
			continue
		}
		if bytes.Contains(r.body, []byte(m)) {
			t.Errorf("LEAK %s: the body carries A's %s %q\n%s", what, label, m, body)
		}
		if strings.Contains(hdr.String(), m) {
			t.Errorf("LEAK %s: a header carries A's %s %q\n%s", what, label, m, hdr.String())
		}
	}
}

// zeroCounts: B's docker info counts none of A's containers or images.
func zeroCounts(t *testing.T, route string, r sweepResult) {
	var info struct{ Containers, ContainersRunning, ContainersStopped, Images int }
	if err := json.Unmarshal(r.body, &info); err != nil {
		t.Errorf("%s: %v", route, err)
		return
	}
	if info.Containers != 0 || info.ContainersRunning != 0 || info.ContainersStopped != 0 || info.Images != 0 {
		t.Errorf("LEAK %s as B: counts A's objects: %+v", route, info)
	}
}

// noPodsOfA: B's node listing counts none of A's pods and shows none of
// what only the admin sees.
func noPodsOfA(t *testing.T, route string, r sweepResult) {
	var nodes []map[string]any
	if err := json.Unmarshal(r.body, &nodes); err != nil || len(nodes) == 0 {
		t.Errorf("%s as B: %v %s", route, err, r.body)
		return
	}
	for _, n := range nodes {
		if n["pods"] != float64(0) {
			t.Errorf("LEAK %s as B: counts A's pods: %s", route, r.body)
		}
		for _, k := range []string{"requestedMemoryBytes", "requestedNanoCPUs", "runtimes", "address", "kernel"} {
			if _, ok := n[k]; ok {
				t.Errorf("%s as B shows the admin's %s: %s", route, k, r.body)
			}
		}
	}
}

// escapePath escapes what a path parameter may not carry as it is.
func escapePath(s string) string {
	return strings.NewReplacer("?", "%3F", "#", "%23", " ", "%20").Replace(s)
}

func mustMediaType(t *testing.T, img v1.Image) string {
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return string(mt)
}
