package access

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Multipart uploads keep their parts in the data directory, outside the
// volume (UploadDir/<tenant>/<volume>/<upload ID>/), until
// CompleteMultipartUpload writes the object into the volume in one
// rename; a pod never sees a part.

const maxParts = 10000

// uploadTTL is how long an upload that is neither completed nor aborted
// keeps its parts; a new upload of the same volume removes older ones.
const uploadTTL = 7 * 24 * time.Hour

// uploadDir is the directory of an upload of the caller's volume, checked
// to be for key; errNoSuchUpload when there is none.
func (s *Server) uploadDirOf(req *s3Request) (string, error) {
	id := req.q.Get("uploadId")
	if len(id) != 32 || !isHex(id) {
		return "", errNoSuchUpload
	}
	dir := filepath.Join(s.uploadsOf(req.g, req.bucket), id)
	key, err := os.ReadFile(filepath.Join(dir, "key"))
	if errors.Is(err, os.ErrNotExist) {
		return "", errNoSuchUpload
	}
	if err != nil {
		return "", err
	}
	if string(key) != req.key {
		return "", errNoSuchUpload
	}
	return dir, nil
}

func (s *Server) createUpload(req *s3Request, p string) error {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	dir := filepath.Join(s.uploadsOf(req.g, req.bucket), id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte(req.key), 0o600); err != nil {
		return err
	}
	if t, ok := mtimeOf(req.r.Header); ok {
		os.WriteFile(filepath.Join(dir, "mtime"), []byte(strconv.FormatInt(t.UnixNano(), 10)), 0o600)
	}
	s.sweepUploads(filepath.Dir(dir))
	return writeXML(req.w, http.StatusOK, initiateMultipartUploadResult{NS: s3NS, Bucket: req.bucket, Key: req.key, UploadID: id})
}

func partName(n int) string { return fmt.Sprintf("part-%05d", n) }

func (s *Server) uploadPart(req *s3Request, p string) error {
	n, err := strconv.Atoi(req.q.Get("partNumber"))
	if err != nil || n < 1 || n > maxParts {
		return s3Err(http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
	}
	dir, err := s.uploadDirOf(req)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(io.MultiWriter(f, h), req.r.Body); err != nil {
		switch {
		case errors.Is(err, errPayloadHash):
			return s3Err(http.StatusBadRequest, "XAmzContentSHA256Mismatch", err.Error())
		case errors.Is(err, errSignature):
			return s3Err(http.StatusForbidden, "SignatureDoesNotMatch", "a chunk's signature does not match")
		case errors.Is(err, syscall.ENOSPC):
			return s3Err(http.StatusInsufficientStorage, "InternalError", "the server is out of space for upload parts")
		}
		return s3Err(http.StatusBadRequest, "IncompleteBody", "reading the body: "+err.Error())
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, partName(n))); err != nil {
		return err
	}
	req.w.Header().Set("ETag", `"`+hex.EncodeToString(h.Sum(nil))+`"`)
	req.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) completeUpload(req *s3Request, root *os.Root, p string) error {
	dir, err := s.uploadDirOf(req)
	if err != nil {
		return err
	}
	var c completeMultipartUpload
	if err := readXML(req.r.Body, &c); err != nil {
		return err
	}
	if len(c.Parts) == 0 || len(c.Parts) > maxParts {
		return s3Err(http.StatusBadRequest, "MalformedXML", "name from 1 to 10000 parts")
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var readers []io.Reader
	for i, part := range c.Parts {
		if part.PartNumber < 1 || part.PartNumber > maxParts || i > 0 && part.PartNumber <= c.Parts[i-1].PartNumber {
			return s3Err(http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
		}
		f, err := os.Open(filepath.Join(dir, partName(part.PartNumber)))
		if err != nil {
			return s3Err(http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d was not uploaded", part.PartNumber))
		}
		files = append(files, f)
		h := md5.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if strings.Trim(part.ETag, `"`) != hex.EncodeToString(h.Sum(nil)) {
			return s3Err(http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d: the ETag does not match the part uploaded", part.PartNumber))
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		readers = append(readers, f)
	}
	var mtime time.Time
	if b, err := os.ReadFile(filepath.Join(dir, "mtime")); err == nil {
		if ns, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			mtime = time.Unix(0, ns)
		}
	}
	tag, err := writeObject(root, p, io.MultiReader(readers...), mtime, nil)
	if err != nil {
		return err
	}
	os.RemoveAll(dir)
	// The ETag is the MD5 of the whole object (S3 would give an MD5 of
	// the parts' MD5s): listings give the same, and it is checkable.
	return writeXML(req.w, http.StatusOK, completeMultipartUploadResult{NS: s3NS, Location: "/" + req.bucket + "/" + req.key, Bucket: req.bucket, Key: req.key, ETag: `"` + tag + `"`})
}

func (s *Server) abortUpload(req *s3Request) error {
	dir, err := s.uploadDirOf(req)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	req.w.WriteHeader(http.StatusNoContent)
	return nil
}

// sweepUploads removes the uploads in dir (of one volume) begun more than
// uploadTTL ago.
func (s *Server) sweepUploads(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && e.IsDir() && s.now().Sub(fi.ModTime()) > uploadTTL {
			s.log.Info("removing an abandoned multipart upload", "dir", filepath.Join(dir, e.Name()))
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
