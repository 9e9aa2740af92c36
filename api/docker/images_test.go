package docker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

func TestProgressBar(t *testing.T) {
	for _, tt := range []struct {
		cur, total int64
		want       string
	}{
		{512, 1024, "[=========================>                         ]     512B/1.024kB"},
		{1024, 1024, "[==================================================>]  1.024kB/1.024kB"},
		{3 << 20, 0, " 3.146MB"},
	} {
		if got := progressBar(tt.cur, tt.total); got != tt.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tt.cur, tt.total, got, tt.want)
		}
	}
}

// imageServer is the API over a real image store, without the rest of
// the cloud: the image endpoints need nothing else.
func imageServer(t *testing.T) (*httptest.Server, *image.Store) {
	t.Helper()
	testenv.RequireRoot(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := image.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Log: log, Images: st}).Handler())
	t.Cleanup(srv.Close)
	return srv, st
}

func lines(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestImagesAPIPullStream(t *testing.T) {
	srv, _ := imageServer(t)
	reg := testenv.StartRegistry(t)
	reg.Push(t, testimages.BusyboxImage(t), "busybox:1")

	resp, err := http.Post(srv.URL+"/v1.50/images/create?fromImage="+url.QueryEscape(reg.Addr+"/busybox")+"&tag=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	msgs := lines(t, resp.Body)
	first, _ := json.Marshal(msgs[0])
	if string(first) != `{"id":"1","status":"Pulling from busybox"}` {
		t.Errorf("first line %s", first)
	}
	var sawFsLayer, sawDownloading bool
	for _, m := range msgs {
		switch m["status"] {
		case "Pulling fs layer":
			sawFsLayer = m["progressDetail"] != nil && len(m["id"].(string)) == 12
		case "Downloading":
			d := m["progressDetail"].(map[string]any)
			sawDownloading = d["total"].(float64) > 0 && strings.HasPrefix(m["progress"].(string), "[")
		}
		if m["error"] != nil {
			t.Fatalf("error in stream: %v", m)
		}
	}
	last := msgs[len(msgs)-1]["status"]
	if !sawFsLayer || !sawDownloading || last != "Status: Downloaded newer image for "+reg.Addr+"/busybox:1" {
		t.Errorf("messages %v", msgs)
	}

	// Errors before the stream starts are HTTP errors with Docker's words.
	for q, want := range map[string]struct {
		status int
		msg    string
	}{
		"fromImage=" + url.QueryEscape(reg.Addr+"/busybox") + "&tag=nosuch": {404, "manifest for " + reg.Addr + "/busybox:nosuch not found: manifest unknown: manifest unknown"},
		"fromImage=127.0.0.1:1/busybox&tag=latest":                          {500, `Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`}, // loopback: https, then http, as dockerd
	} {
		resp, err := http.Post(srv.URL+"/v1.50/images/create?"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != want.status || body["message"] != want.msg {
			t.Errorf("%s: %d %q, want %d %q", q, resp.StatusCode, body["message"], want.status, want.msg)
		}
	}
}

func TestImagesAPIShapes(t *testing.T) {
	srv, _ := imageServer(t)
	archive, err := os.ReadFile(testimages.Busybox(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL+"/v1.50/images/load", "application/x-tar", bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	msgs := lines(t, resp.Body)
	resp.Body.Close()
	if msgs[0]["status"] != "Loading layer" || msgs[len(msgs)-1]["stream"] != "Loaded image: busybox:latest\n" {
		t.Fatalf("load: %v", msgs)
	}
	tag, _ := http.Post(srv.URL+"/v1.50/images/busybox/tag?repo=localhost:5000/a/b&tag=2", "", nil)
	if tag.StatusCode != 201 {
		t.Fatalf("tag: %d", tag.StatusCode)
	}

	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(v)
		return resp.StatusCode
	}
	var list []map[string]any
	if get("/v1.50/images/json", &list) != 200 || len(list) != 1 {
		t.Fatalf("list %v", list)
	}
	for _, k := range []string{"Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize", "Labels", "Containers"} {
		if _, ok := list[0][k]; !ok {
			t.Errorf("list lacks %s: %v", k, list[0])
		}
	}
	if _, ok := list[0]["Created"].(float64); !ok {
		t.Errorf("Created %v is not unix seconds", list[0]["Created"])
	}
	var old []map[string]any
	get("/v1.41/images/json", &old)
	if old[0]["VirtualSize"] == nil {
		t.Errorf("API 1.41 list lacks VirtualSize")
	}

	var insp map[string]any
	if get("/v1.50/images/localhost:5000/a/b:2/json", &insp) != 200 {
		t.Fatalf("inspect by a name with slashes: %v", insp)
	}
	cfg := insp["Config"].(map[string]any)
	if insp["Id"] != list[0]["Id"] || insp["Architecture"] != "amd64" || cfg["Cmd"] == nil || insp["RootFS"].(map[string]any)["Type"] != "layers" ||
		insp["Metadata"].(map[string]any)["LastTagTime"] == "0001-01-01T00:00:00Z" {
		t.Errorf("inspect %v", insp)
	}
	if _, ok := insp["Created"].(string); !ok {
		t.Errorf("inspect Created %v is not RFC 3339", insp["Created"])
	}
	var hist []map[string]any
	if get("/v1.50/images/busybox/history", &hist) != 200 || hist[0]["Id"] != list[0]["Id"] {
		t.Errorf("history %v", hist)
	}

	var e map[string]string
	if st := get("/v1.50/images/nosuch/json", &e); st != 404 || e["message"] != "No such image: nosuch:latest" {
		t.Errorf("inspect nosuch: %d %v", st, e)
	}
	req, _ := http.NewRequest("DELETE", srv.URL+"/v1.50/images/"+list[0]["Id"].(string)[7:19], nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(e["message"], "must be forced") {
		t.Errorf("rmi by ID: %d %v", resp.StatusCode, e)
	}

	// save streams a tar the store loads back.
	resp, err = http.Get(srv.URL + "/v1.50/images/get?names=busybox")
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || len(saved) == 0 {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/v1.50/images/get?names=nosuch")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("save of a missing image: %d", resp.StatusCode)
	}

	var prune map[string]any
	resp, _ = http.Post(srv.URL+"/v1.50/images/prune?filters="+url.QueryEscape(`{"dangling":{"false":true}}`), "", nil)
	json.NewDecoder(resp.Body).Decode(&prune)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(prune["ImagesDeleted"].([]any)) < 3 || prune["SpaceReclaimed"].(float64) <= 0 {
		t.Errorf("prune: %v", prune)
	}
}
