package ingress

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/macro-cloud/macro/internal/conns"
)

// ServeTCP accepts connections on l, the ingress's public TCP port
// publicPort, and joins each to a target of the route the table has for
// that port (`kr.ingress.tcp.<port>=<publicPort>`), round robin, waking a
// suspended pod when none is ready. A connection for a port without a
// route is closed at once. ServeTCP returns when l is closed.
func (p *Proxy) ServeTCP(l net.Listener, publicPort int) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serveTCPConn(c, publicPort)
		}()
	}
}

func (p *Proxy) serveTCPConn(c net.Conn, publicPort int) {
	defer c.Close()
	tr := p.table.Load().TCP(publicPort)
	if tr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.WakeTimeout)
	t, ok := p.pickOf(ctx, tr.Tenant, tr.Targets, &tr.next)
	cancel()
	if !ok {
		return
	}
	pa, err := p.enter(context.Background(), tr.Tenant, t.Pod)
	if err != nil {
		return
	}
	defer pa.end()
	ctx, cancel = context.WithTimeout(context.Background(), p.opts.DialTimeout)
	b, err := p.dialTarget(ctx, t)
	cancel()
	if err != nil {
		p.health.failed(t.Pod, p.now().Add(p.opts.Backoff))
		p.log.Info("tcp backend", "pod", t.Pod, "addr", t.Addr, "node", t.Node, "err", err)
		return
	}
	defer b.Close()
	conns.Join(c, b)
}
