package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/access"
	"github.com/macro-cloud/macro/auth"
)

// serveS3 starts the S3 endpoint over volumes on addr (--s3-addr): TLS
// with a certificate of the cluster CA, path-style requests.
func serveS3(addr string, ca *auth.CA, hosts []string, a *access.Server, log *slog.Logger) (*http.Server, error) {
	cert, err := ca.ServerCert(hosts, time.Now())
	if err != nil {
		return nil, fmt.Errorf("S3 certificate: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--s3-addr %s: %w", addr, err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv := &http.Server{Handler: a.S3(), ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(log.With("subsystem", "s3").Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(tls.NewListener(l, tlsCfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve S3", "addr", addr, "err", err)
		}
	}()
	log.Info("S3 endpoint over volumes", "addr", "https://"+l.Addr().String())
	return srv, nil
}
