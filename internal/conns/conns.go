// Package conns holds what the proxies (the ingress, the node tunnel's
// dial) share about connections.
package conns

import (
	"io"
	"net"
	"sync"
	"time"
)

// Join copies both ways between a and b until both directions end,
// passing half-closes on (CloseWrite where the connection has it; else a
// deadline ends the other side's copy).
func Join(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.SetDeadline(time.Now())
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
}
