package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// staleClaim is how long a claim may stay unverified before another tenant
// may take the name.
const staleClaim = 24 * time.Hour

// Domain is a custom domain of the caller's, in the answers of /domains.
type Domain struct {
	Name     string    `json:"name"`
	Verified bool      `json:"verified"`
	Created  time.Time `json:"created"`
	// Record is the TXT record that proves the claim, in zone-file form.
	Record string `json:"record"`
	// CheckURL is the other proof: the claim's token (Token) served there,
	// by the domain's current hosting (not by this cloud).
	CheckURL string `json:"checkUrl"`
	Token    string `json:"token"`
}

func domainOf(d types.Domain) Domain {
	return Domain{
		Name: d.Name, Verified: !d.Verified.IsZero(), Created: d.Created,
		Record:   fmt.Sprintf("%s.%s. TXT %q", types.DomainChallengeLabel, d.Name, d.Token),
		CheckURL: domainCheckURL(d), Token: d.Token,
	}
}

// validDomain checks a custom domain's name: a DNS name of two labels or
// more, not an address, not under the cluster's own domain (whose hosts
// every tenant has under <tenant>.<domain> without asking).
func (s *Server) validDomain(name string) (string, error) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if name == "" {
		return "", errorf(http.StatusBadRequest, "a domain name is required")
	}
	if net.ParseIP(name) != nil {
		return "", errorf(http.StatusBadRequest, "%s is an address, not a domain name", name)
	}
	if strings.Count(name, ".") < 1 {
		return "", errorf(http.StatusBadRequest, "invalid domain name %q: want a name such as shop.example.com", name)
	}
	if err := ingress.ValidHost(name); err != nil {
		return "", errorf(http.StatusBadRequest, "invalid domain name %q: %v", name, err)
	}
	if s.domain != "" && (name == s.domain || strings.HasSuffix(name, "."+s.domain)) {
		return "", errorf(http.StatusBadRequest, "%s is under the cluster's domain %s: your hosts there are under <you>.%s and need no claim", name, s.domain, s.domain)
	}
	return name, nil
}

// POST /domains {"name": "shop.example.com"}: claim a domain; the answer
// says which TXT record proves it.
func (s *Server) createDomain(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	name, err := s.validDomain(body.Name)
	if err != nil {
		return err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	d := types.Domain{Name: name, Tenant: caller(r).Tenant, Token: "macro-" + hex.EncodeToString(b[:]), Created: s.now().UTC()}
	var held *store.DomainHeldError
	switch err := s.store.ClaimDomain(r.Context(), &d, staleClaim); {
	case errors.As(err, &held):
		return errorf(http.StatusConflict, "%v", err)
	case errors.Is(err, store.ErrExists):
		return errorf(http.StatusConflict, "you have claimed %s already", name)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusCreated, domainOf(d))
	return nil
}

// GET /domains
func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	list, err := s.store.Domains(r.Context(), caller(r).Tenant)
	if err != nil {
		return err
	}
	out := make([]Domain, 0, len(list))
	for _, d := range list {
		out = append(out, domainOf(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) domainOfRequest(r *http.Request) (types.Domain, error) {
	name := strings.ToLower(r.PathValue("name"))
	d, err := s.store.Domain(r.Context(), caller(r).Tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return d, errorf(http.StatusNotFound, "domain %s not found", name)
	}
	return d, err
}

// GET /domains/{name}
func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) error {
	d, err := s.domainOfRequest(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, domainOf(d))
	return nil
}

// DELETE /domains/{name}: give up the claim; routes on it stop serving.
func (s *Server) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	d, err := s.domainOfRequest(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteDomain(r.Context(), d.Tenant, d.Name); errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "domain %s not found", d.Name)
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// POST /domains/{name}/verify: look the claim's TXT record up and, when it
// holds the token, mark the domain verified; else fetch the token over
// HTTP from the domain (domains_http.go).
func (s *Server) verifyDomain(w http.ResponseWriter, r *http.Request) error {
	d, err := s.domainOfRequest(r)
	if err != nil {
		return err
	}
	if d.Verified.IsZero() {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		rec := types.DomainChallengeLabel + "." + d.Name
		txts, err := s.resolver.LookupTXT(ctx, rec)
		var dnsErr *net.DNSError
		if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
			if s.verifyHTTP(ctx, d) != nil {
				return errorf(http.StatusBadGateway, "looking up the TXT record of %s: %v", rec, err)
			}
			txts = []string{d.Token} // proven over HTTP
		}
		found := false
		for _, t := range txts {
			found = found || strings.TrimSpace(t) == d.Token
		}
		if !found {
			have := "none"
			if len(txts) > 0 {
				have = fmt.Sprintf("%q", txts)
			}
			if herr := s.verifyHTTP(ctx, d); herr != nil {
				return errorf(http.StatusConflict, "not verified: %s has TXT records %s; publish %s and try again (DNS may take a while to update), or serve %q at %s from the domain's current hosting (%v)",
					rec, have, domainOf(d).Record, d.Token, domainCheckURL(d), herr)
			}
		}
		if d, err = s.store.VerifyDomain(r.Context(), d.Tenant, d.Name, s.now().UTC()); errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "domain %s not found", d.Name)
		} else if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, domainOf(d))
	return nil
}
