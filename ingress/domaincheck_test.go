package ingress

import (
	"strings"
	"testing"
)

// TestDomainCheckPathReserved: the path of the HTTP check of custom
// domains is answered by the ingress itself on every host, never by a pod:
// no tenant proves a domain through this cloud.
func TestDomainCheckPathReserved(t *testing.T) {
	_, be := app(t, "web")
	f := newIngress(t, Config{Domain: "cloud.test"}, routeTo("alice", "web", be, "http://app.*"))
	resp, body := f.get(t, f.http, "app.alice.cloud.test", DomainCheckPath+"macro-0123")
	if resp.StatusCode != 404 || strings.Contains(body, "web ") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, body := f.get(t, f.http, "app.alice.cloud.test", "/.well-known/other"); resp.StatusCode != 200 || !strings.HasPrefix(body, "web ") {
		t.Fatalf("other well-known paths are the app's: %d %s", resp.StatusCode, body)
	}
}
