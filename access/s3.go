package access

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// S3 serves the S3 API with path-style requests (/<bucket>/<key>), a
// bucket being a volume of the caller's. Requests are signed with AWS
// Signature V4 by a volume access key.
func (s *Server) S3() http.Handler {
	return http.HandlerFunc(s.serveS3)
}

// s3Region is the region clients may sign for; any region is accepted,
// this one is what GetBucketLocation answers.
const s3Region = "us-east-1"

// maxXMLBody bounds the XML bodies of DeleteObjects and
// CompleteMultipartUpload.
const maxXMLBody = 4 << 20

// unsupported are bucket and object subresources this server does not
// serve: their requests get NotImplemented rather than a plain listing or
// read.
var unsupported = []string{"acl", "policy", "cors", "lifecycle", "versioning", "versions", "tagging", "website", "logging",
	"notification", "replication", "encryption", "object-lock", "retention", "legal-hold", "torrent", "restore", "select",
	"accelerate", "analytics", "inventory", "metrics", "ownershipControls", "publicAccessBlock", "requestPayment", "intelligent-tiering", "attributes"}

type s3Request struct {
	w      http.ResponseWriter
	r      *http.Request
	g      grant
	id     string
	bucket string
	key    string
	q      url.Values
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	var b [8]byte
	rand.Read(b[:])
	req := &s3Request{w: w, r: r, id: strings.ToUpper(hex.EncodeToString(b[:]))}
	w.Header().Set("X-Amz-Request-Id", req.id)
	w.Header().Set("Server", "macro")
	if err := s.s3(req); err != nil {
		s.writeS3Error(req, err)
	}
}

func (s *Server) writeS3Error(req *s3Request, err error) {
	var se *s3Error
	if !errors.As(err, &se) {
		s.log.Warn("s3 request failed", "method", req.r.Method, "path", req.r.URL.Path, "err", err)
		se = s3Err(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	}
	req.w.Header().Set("Content-Type", "application/xml")
	req.w.WriteHeader(se.Status)
	if req.r.Method == http.MethodHead {
		return
	}
	io.WriteString(req.w, xml.Header)
	xml.NewEncoder(req.w).Encode(xmlError{Code: se.Code, Message: se.Message, Resource: req.r.URL.Path, RequestID: req.id})
}

func writeXML(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	return xml.NewEncoder(w).Encode(v)
}

// s3Auth checks a request's signature and returns its caller; the body is
// then checked against the signed payload hash as it is read.
func (s *Server) s3Auth(r *http.Request) (grant, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if r.URL.Query().Has("X-Amz-Signature") {
			return grant{}, s3Err(http.StatusNotImplemented, "NotImplemented", "presigned URLs are not supported: sign the Authorization header")
		}
		return grant{}, errMissingSecurity
	}
	sig, err := parseAuthorization(h)
	if err != nil {
		return grant{}, s3Err(http.StatusBadRequest, "AuthorizationHeaderMalformed", err.Error())
	}
	if !IsKeyID(sig.accessKey) {
		return grant{}, s3Err(http.StatusForbidden, "InvalidAccessKeyId",
			"The AWS Access Key Id you provided does not exist in our records: S3 takes a volume access key (kra volume key create), not an access token, whose secret the server does not keep")
	}
	k, err := s.lookupKey(r.Context(), sig.accessKey)
	if errors.Is(err, errBadKey) {
		return grant{}, s3Err(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
	}
	if err != nil {
		return grant{}, err
	}
	payload, err := verifySigV4(r, sig, s.keys.Secret(k.ID), s.now())
	switch {
	case errors.Is(err, errSignature):
		return grant{}, s3Err(http.StatusForbidden, "SignatureDoesNotMatch", err.Error())
	case errors.Is(err, errSkew):
		return grant{}, s3Err(http.StatusForbidden, "RequestTimeTooSkewed", err.Error())
	case errors.Is(err, errUnsupportedPayload):
		return grant{}, s3Err(http.StatusNotImplemented, "NotImplemented", err.Error())
	case err != nil:
		return grant{}, s3Err(http.StatusBadRequest, "InvalidRequest", err.Error())
	}
	body, err := payloadReader(r, sig, s.keys.Secret(k.ID), payload)
	if err != nil {
		return grant{}, err
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{body, r.Body}
	return grant{tenant: k.Tenant, key: &k, readOnly: k.ReadOnly}, nil
}

func (s *Server) s3(req *s3Request) error {
	r := req.r
	g, err := s.s3Auth(r)
	if err != nil {
		return err
	}
	req.g = g
	req.q = r.URL.Query()
	for _, sub := range unsupported {
		if req.q.Has(sub) {
			return s3Err(http.StatusNotImplemented, "NotImplemented", "?"+sub+" is not supported by this server")
		}
	}
	req.bucket, req.key, _ = strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if req.bucket == "" {
		if r.Method != http.MethodGet {
			return s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		}
		return s.listBuckets(req)
	}
	if _, err := s.volume(r.Context(), g, req.bucket); errors.Is(err, errNoVolume) {
		return errNoSuchBucket
	} else if err != nil {
		return err
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if req.key == "" && r.Method == http.MethodPut {
		write = false // CreateBucket of an existing bucket changes nothing
	}
	if write && g.readOnly {
		return errAccessDenied
	}
	dir, err := s.volumes.VolumeRoot(r.Context(), g.tenant, req.bucket)
	if err != nil {
		return fmt.Errorf("volume %s: %w", req.bucket, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("volume %s: %w", req.bucket, err)
	}
	defer root.Close()
	if req.key == "" {
		return s.bucketOp(req, root)
	}
	return s.objectOp(req, root)
}

func (s *Server) listBuckets(req *s3Request) error {
	vs, err := s.visibleVolumes(req.r.Context(), req.g)
	if err != nil {
		return err
	}
	res := listAllMyBucketsResult{NS: s3NS, Owner: owner{ID: req.g.tenant, DisplayName: req.g.tenant}, Buckets: []bucketXML{}}
	for _, v := range vs {
		res.Buckets = append(res.Buckets, bucketXML{Name: v.Name, CreationDate: v.Created.UTC()})
	}
	return writeXML(req.w, http.StatusOK, res)
}

func (s *Server) bucketOp(req *s3Request, root *os.Root) error {
	switch req.r.Method {
	case http.MethodHead:
		req.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodPut:
		// The bucket exists (it is the volume): S3 in us-east-1 answers
		// 200 to its owner.
		req.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodDelete:
		return s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "a bucket is a volume: remove it with docker volume rm")
	case http.MethodPost:
		if req.q.Has("delete") {
			return s.deleteObjects(req, root)
		}
	case http.MethodGet:
		switch {
		case req.q.Has("location"):
			return writeXML(req.w, http.StatusOK, locationConstraint{NS: s3NS})
		case req.q.Has("uploads"):
			return s3Err(http.StatusNotImplemented, "NotImplemented", "ListMultipartUploads is not supported")
		}
		return s.listObjects(req, root)
	}
	return s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
}

// listParams are the parameters of ListObjects (V1 and V2).
type listParams struct {
	v2        bool
	prefix    string
	delimiter string
	after     string // marker, start-after or the continuation's key
	max       int
	urlEncode bool
}

// parseListParams reads and checks the query of a listing.
func parseListParams(q url.Values) (listParams, error) {
	p := listParams{prefix: q.Get("prefix"), delimiter: q.Get("delimiter"), max: 1000}
	switch q.Get("list-type") {
	case "":
	case "2":
		p.v2 = true
	default:
		return p, s3Err(http.StatusBadRequest, "InvalidArgument", "list-type must be 2 or absent")
	}
	switch q.Get("encoding-type") {
	case "":
	case "url":
		p.urlEncode = true
	default:
		return p, s3Err(http.StatusBadRequest, "InvalidArgument", "Invalid Encoding Method specified in Request")
	}
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, s3Err(http.StatusBadRequest, "InvalidArgument", "max-keys must be a number from 0 to 1000")
		}
		p.max = min(n, 1000)
	}
	if len(p.prefix) > maxKeyLen || len(p.delimiter) > maxKeyLen {
		return p, s3Err(http.StatusBadRequest, "InvalidArgument", "prefix or delimiter too long")
	}
	if p.v2 {
		p.after = q.Get("start-after")
		if tok := q.Get("continuation-token"); tok != "" {
			b, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil || len(b) == 0 || len(b) > maxKeyLen {
				return p, s3Err(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect")
			}
			p.after = string(b)
		}
	} else {
		p.after = q.Get("marker")
	}
	return p, nil
}

func (s *Server) listObjects(req *s3Request, root *os.Root) error {
	p, err := parseListParams(req.q)
	if err != nil {
		return err
	}
	var entries []listEntry
	var truncated bool
	if p.max > 0 {
		if entries, truncated, err = listObjects(root, p.prefix, p.delimiter, p.after, p.max); err != nil {
			return err
		}
	}
	enc := func(s string) string {
		if p.urlEncode {
			return awsEscape(s, true)
		}
		return s
	}
	res := listBucketResult{NS: s3NS, Name: req.bucket, Prefix: enc(p.prefix), Delimiter: enc(p.delimiter), MaxKeys: p.max, IsTruncated: truncated,
		Contents: []objectXML{}, CommonPrefixes: []commonPrefix{}}
	if p.urlEncode {
		res.EncodingType = "url"
	}
	for _, e := range entries {
		if e.prefix {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: enc(e.key)})
			continue
		}
		res.Contents = append(res.Contents, objectXML{Key: enc(e.key), LastModified: e.mtime.UTC(), ETag: e.etag, Size: e.size, StorageClass: "STANDARD"})
	}
	last := ""
	if len(entries) > 0 {
		last = entries[len(entries)-1].key
	}
	if p.v2 {
		n := len(entries)
		res.KeyCount = &n
		res.ContinuationToken = req.q.Get("continuation-token")
		res.StartAfter = enc(req.q.Get("start-after"))
		if truncated {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
		}
	} else {
		m := enc(p.after)
		res.Marker = &m
		if truncated {
			res.NextMarker = enc(last)
		}
	}
	return writeXML(req.w, http.StatusOK, res)
}

func (s *Server) objectOp(req *s3Request, root *os.Root) error {
	p, dirMarker, err := keyPath(req.key)
	if err != nil {
		return err
	}
	r, q := req.r, req.q
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if q.Has("uploadId") {
			return s3Err(http.StatusNotImplemented, "NotImplemented", "ListParts is not supported")
		}
		if dirMarker {
			return errNoSuchKey
		}
		return s.getObject(req, root, p)
	case http.MethodPut:
		switch {
		case q.Has("uploadId") && r.Header.Get("X-Amz-Copy-Source") != "":
			return s3Err(http.StatusNotImplemented, "NotImplemented", "UploadPartCopy is not supported")
		case q.Has("uploadId") || q.Has("partNumber"):
			return s.uploadPart(req, p)
		case r.Header.Get("X-Amz-Copy-Source") != "":
			if dirMarker {
				return s3Err(http.StatusBadRequest, "InvalidArgument", "cannot copy onto a folder key")
			}
			return s.copyObject(req, root, p)
		case dirMarker:
			return s.putFolder(req, root, p)
		}
		return s.putObject(req, root, p)
	case http.MethodPost:
		if dirMarker {
			return s3Err(http.StatusBadRequest, "InvalidArgument", "a key that ends in / is a folder")
		}
		switch {
		case q.Has("uploads"):
			return s.createUpload(req, p)
		case q.Has("uploadId"):
			return s.completeUpload(req, root, p)
		}
	case http.MethodDelete:
		if q.Has("uploadId") {
			return s.abortUpload(req)
		}
		if err := deleteObject(root, p, dirMarker); err != nil {
			return err
		}
		req.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
}

func (s *Server) getObject(req *s3Request, root *os.Root, p string) error {
	f, err := root.Open(p)
	if err != nil {
		if e := fsErr(err); e != err {
			var se *s3Error
			if errors.As(e, &se) && se.Status == http.StatusConflict {
				return errNoSuchKey // a path through a file
			}
			return e
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errNoSuchKey
	}
	h := req.w.Header()
	h.Set("ETag", etagOf(f, fi))
	h.Set("Accept-Ranges", "bytes")
	h.Set("X-Amz-Meta-Mtime", fmt.Sprintf("%d.%09d", fi.ModTime().Unix(), fi.ModTime().Nanosecond()))
	ct := mime.TypeByExtension(path.Ext(p))
	if ct == "" {
		ct = "binary/octet-stream"
	}
	h.Set("Content-Type", ct)
	http.ServeContent(req.w, req.r, "", fi.ModTime(), f)
	return nil
}

func (s *Server) putObject(req *s3Request, root *os.Root, p string) error {
	var wantMD5 []byte
	if v := req.r.Header.Get("Content-MD5"); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != md5.Size {
			return s3Err(http.StatusBadRequest, "InvalidDigest", "The Content-MD5 you specified is not valid.")
		}
		wantMD5 = b
	}
	mtime, _ := mtimeOf(req.r.Header)
	tag, err := writeObject(root, p, req.r.Body, mtime, wantMD5)
	if err != nil {
		return err
	}
	req.w.Header().Set("ETag", `"`+tag+`"`)
	req.w.WriteHeader(http.StatusOK)
	return nil
}

// putFolder makes the directory of a "folder" key (an empty PUT of a key
// that ends in '/').
func (s *Server) putFolder(req *s3Request, root *os.Root, p string) error {
	n, _ := io.Copy(io.Discard, io.LimitReader(req.r.Body, 1))
	if n > 0 {
		return s3Err(http.StatusBadRequest, "InvalidArgument", "a key that ends in / names a folder: its body must be empty")
	}
	if err := root.MkdirAll(p, 0o755); err != nil {
		return writeErr(err)
	}
	req.w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
	req.w.WriteHeader(http.StatusOK)
	return nil
}

// deleteObject removes the file of a key; a key that is not there is no
// error (S3's DeleteObject is idempotent). A folder key removes its
// directory when it is empty.
func deleteObject(root *os.Root, p string, dirMarker bool) error {
	fi, err := root.Lstat(p)
	if err != nil {
		if e := fsErr(err); e == errNoSuchKey {
			return nil
		}
		var se *s3Error
		if errors.As(fsErr(err), &se) && se.Status == http.StatusConflict {
			return nil
		}
		return fsErr(err)
	}
	if fi.IsDir() != dirMarker {
		return nil // a key names a file, a folder key a directory
	}
	if err := root.Remove(p); err != nil {
		if dirMarker {
			return nil // not empty: the folder stays while it holds objects
		}
		return fsErr(err)
	}
	return nil
}

func (s *Server) deleteObjects(req *s3Request, root *os.Root) error {
	var d deleteRequest
	if err := readXML(req.r.Body, &d); err != nil {
		return err
	}
	if len(d.Objects) > 1000 {
		return s3Err(http.StatusBadRequest, "MalformedXML", "at most 1000 keys per request")
	}
	res := deleteResult{NS: s3NS}
	for _, o := range d.Objects {
		p, dir, err := keyPath(o.Key)
		if err == nil {
			err = deleteObject(root, p, dir)
		}
		if err != nil {
			code, msg := "InternalError", err.Error()
			var se *s3Error
			if errors.As(err, &se) {
				code, msg = se.Code, se.Message
			}
			res.Errors = append(res.Errors, deleteErrorXML{Key: o.Key, Code: code, Message: msg})
			continue
		}
		if !d.Quiet {
			res.Deleted = append(res.Deleted, deletedXML{Key: o.Key})
		}
	}
	return writeXML(req.w, http.StatusOK, res)
}

// readXML decodes a request's XML body, bounded.
func readXML(body io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, maxXMLBody+1))
	if err != nil {
		if errors.Is(err, errPayloadHash) {
			return s3Err(http.StatusBadRequest, "XAmzContentSHA256Mismatch", err.Error())
		}
		return s3Err(http.StatusBadRequest, "IncompleteBody", err.Error())
	}
	if len(data) > maxXMLBody {
		return s3Err(http.StatusBadRequest, "MalformedXML", "the XML body is too large")
	}
	if err := xml.Unmarshal(data, v); err != nil {
		return errMalformedXML
	}
	return nil
}

// copySource parses X-Amz-Copy-Source: "[/]bucket/key", URL-encoded.
func copySource(v string) (bucket, key string, err error) {
	v, err = url.PathUnescape(v)
	if err != nil {
		return "", "", s3Err(http.StatusBadRequest, "InvalidArgument", "malformed x-amz-copy-source")
	}
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "/"), "?versionId=")
	bucket, key, ok := strings.Cut(v, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", s3Err(http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source must be /bucket/key")
	}
	return bucket, key, nil
}

func (s *Server) copyObject(req *s3Request, root *os.Root, p string) error {
	srcBucket, srcKey, err := copySource(req.r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		return err
	}
	sp, dir, err := keyPath(srcKey)
	if err != nil {
		return err
	}
	if dir {
		return errNoSuchKey
	}
	srcRoot := root
	if srcBucket != req.bucket {
		if _, err := s.volume(req.r.Context(), req.g, srcBucket); errors.Is(err, errNoVolume) {
			return errNoSuchBucket
		} else if err != nil {
			return err
		}
		d, err := s.volumes.VolumeRoot(req.r.Context(), req.g.tenant, srcBucket)
		if err != nil {
			return err
		}
		if srcRoot, err = os.OpenRoot(d); err != nil {
			return err
		}
		defer srcRoot.Close()
	}
	mtime, hasMtime := time.Time{}, false
	if strings.EqualFold(req.r.Header.Get("X-Amz-Metadata-Directive"), "REPLACE") {
		mtime, hasMtime = mtimeOf(req.r.Header)
	}
	if srcRoot == root && sp == p {
		// A copy onto itself changes metadata only: rclone sets a
		// file's time this way.
		if !hasMtime {
			return s3Err(http.StatusBadRequest, "InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.")
		}
		if err := root.Chtimes(p, mtime, mtime); err != nil {
			return fsErr(err)
		}
		return s.copyResult(req, root, p)
	}
	src, err := srcRoot.Open(sp)
	if err != nil {
		return fsErr(err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errNoSuchKey
	}
	if !hasMtime {
		mtime = fi.ModTime()
	}
	if _, err := writeObject(root, p, src, mtime, nil); err != nil {
		return err
	}
	return s.copyResult(req, root, p)
}

func (s *Server) copyResult(req *s3Request, root *os.Root, p string) error {
	f, err := root.Open(p)
	if err != nil {
		return fsErr(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return writeXML(req.w, http.StatusOK, copyObjectResult{NS: s3NS, LastModified: fi.ModTime().UTC(), ETag: etagOf(f, fi)})
}

// uploadsOf is the directory of a volume's multipart uploads.
func (s *Server) uploadsOf(g grant, bucket string) string {
	return path.Join(s.uploadDir, g.tenant, bucket)
}

// parseQuery parses a raw query string strictly.
func parseQuery(raw string) (url.Values, error) { return url.ParseQuery(raw) }

// payloadReader is the body of a verified request as the client signed
// it: checked against its SHA-256, or decoded from aws-chunked.
func payloadReader(r *http.Request, sig sigV4, secret, payload string) (io.Reader, error) {
	switch payload {
	case streamingSigned, streamingTrailer:
	default:
		return checkedBody(r.Body, payload), nil
	}
	want := int64(-1)
	if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxDecodedPayload {
			return nil, s3Err(http.StatusBadRequest, "InvalidArgument", "malformed x-amz-decoded-content-length")
		}
		want = n
	}
	var signer *chunkSigner
	if payload == streamingSigned {
		signer = &chunkSigner{key: signingKey(secret, sig), amzDate: r.Header.Get("X-Amz-Date"), scope: sig.scope(), prev: sig.signature}
	}
	return newChunkedReader(r.Body, signer, want), nil
}
