package testenv

import (
	"net"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a DNS server for tests that answers TXT questions from what the
// test sets, over UDP on loopback; every other question is NXDOMAIN.
type DNS struct {
	Addr string // 127.0.0.1:PORT

	mu  sync.Mutex
	txt map[string][]string // fully qualified name -> records
}

// StartDNS starts a DNS server that stops when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &DNS{txt: map[string][]string{}, Addr: pc.LocalAddr().String()}
	go d.serve(pc)
	return d
}

// SetTXT makes name (without the final dot) answer the TXT records recs.
func (d *DNS) SetTXT(name string, recs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[name+"."] = recs
}

func (d *DNS) serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if msg, ok := d.answer(buf[:n]); ok {
			pc.WriteTo(msg, from)
		}
	}
}

func (d *DNS) answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	d.mu.Lock()
	recs := d.txt[q.Name.String()]
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}
	if q.Type != dnsmessage.TypeTXT || len(recs) == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if rh.RCode == dnsmessage.RCodeSuccess {
		for _, r := range recs {
			b.TXTResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.TXTResource{TXT: []string{r}})
		}
	}
	msg, err := b.Finish()
	return msg, err == nil
}
