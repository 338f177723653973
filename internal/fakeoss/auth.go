package fakeoss

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// authenticate checks r's signature, V1 or V4, and returns nil when it is
// valid. key is the object key decoded from the path.
func (s *Server) authenticate(r *http.Request, key string) *apiError {
	authorization := r.Header.Get("Authorization")
	if authorization == "" {
		return &apiError{status: http.StatusForbidden, code: "AccessDenied",
			message: "The bucket is private and the request has no Authorization header."}
	}
	if params, ok := strings.CutPrefix(authorization, v4Algorithm+" "); ok {
		if s.opts.Region == "" {
			return &apiError{status: http.StatusBadRequest, code: "InvalidArgument",
				message: "fakeoss checks V4 signatures only when it has a region (Options.Region)."}
		}
		return s.authenticateV4(r, key, params)
	}
	return s.authenticateV1(r, key, authorization)
}

// authenticateV1 checks a V1 signature.
//
// In the V1 scheme the Authorization header is "OSS <AccessKeyId>:<sig>",
// where sig is base64(HMAC-SHA1(AccessKeySecret, StringToSign)) and
// StringToSign is
//
//	VERB \n Content-MD5 \n Content-Type \n Date \n
//	CanonicalizedOSSHeaders CanonicalizedResource
//
// CanonicalizedOSSHeaders has one "name:value\n" line per x-oss- header,
// with lower-case names in ascending byte order. CanonicalizedResource is
// /<bucket>/<key>, unescaped. Requests with sub-resources never get here
// (serve rejects them), so the resource has no query part.
func (s *Server) authenticateV1(r *http.Request, key, authorization string) *apiError {
	credentials, ok := strings.CutPrefix(authorization, "OSS ")
	if !ok {
		return &apiError{status: http.StatusBadRequest, code: "InvalidArgument",
			message: "fakeoss checks V1 (Authorization: OSS <AccessKeyId>:<Signature>) and V4 (OSS4-HMAC-SHA256) signatures only."}
	}
	accessKeyID, signature, ok := strings.Cut(credentials, ":")
	if !ok || accessKeyID == "" || signature == "" {
		return &apiError{status: http.StatusBadRequest, code: "InvalidArgument",
			message: "The Authorization header is not of the form OSS <AccessKeyId>:<Signature>."}
	}
	if accessKeyID != s.opts.AccessKeyID {
		return &apiError{status: http.StatusForbidden, code: "InvalidAccessKeyId",
			message: "The access key ID in the request is not known to this server.", accessKeyID: accessKeyID}
	}
	date, err := http.ParseTime(r.Header.Get("Date"))
	if err != nil {
		return &apiError{status: http.StatusForbidden, code: "AccessDenied",
			message: "The Date header is missing or not an HTTP date."}
	}
	if apiErr := s.checkSkew(date); apiErr != nil {
		return apiErr
	}

	stringToSign := v1StringToSign(r, "/"+s.opts.Bucket+"/"+key)
	mac := hmac.New(sha1.New, []byte(s.opts.AccessKeySecret))
	mac.Write([]byte(stringToSign))
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return signatureMismatch(accessKeyID, stringToSign)
	}
	s.countSigned(false)
	return nil
}

// v4Algorithm starts the Authorization header of a V4 signature.
const v4Algorithm = "OSS4-HMAC-SHA256"

// authenticateV4 checks a V4 signature. The Authorization header is
//
//	OSS4-HMAC-SHA256 Credential=<AccessKeyId>/<yyyymmdd>/<region>/oss/aliyun_v4_request,
//	[AdditionalHeaders=<name>;<name>,]Signature=<hex>
//
// and the signature is hex(HMAC-SHA256(SigningKey, StringToSign)), where
//
//	StringToSign = OSS4-HMAC-SHA256 \n <date> \n <yyyymmdd>/<region>/oss/aliyun_v4_request \n
//	               hex(SHA-256(CanonicalRequest))
//	CanonicalRequest = VERB \n /<bucket>/<escaped key> \n <query> \n
//	                   CanonicalHeaders \n AdditionalHeaders \n <payload hash>
//
// <date> is the x-oss-date header or else the Date header, as sent.
// CanonicalHeaders has one "name:value\n" line for Content-MD5,
// Content-Type, each x-oss- header and each additional header, with
// lower-case names in ascending order. The payload hash is the
// x-oss-content-sha256 header, UNSIGNED-PAYLOAD by default. SigningKey
// chains HMAC-SHA256 from "aliyun_v4" + AccessKeySecret over the day, the
// region, "oss" and "aliyun_v4_request".
func (s *Server) authenticateV4(r *http.Request, key, params string) *apiError {
	malformed := &apiError{status: http.StatusBadRequest, code: "InvalidArgument",
		message: "The Authorization header is not of the form OSS4-HMAC-SHA256 Credential=<id>/<day>/<region>/oss/aliyun_v4_request,Signature=<hex>."}
	fields := map[string]string{}
	for part := range strings.SplitSeq(params, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return malformed
		}
		fields[name] = value
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] == "" || scope[3] != "oss" || scope[4] != "aliyun_v4_request" || fields["Signature"] == "" {
		return malformed
	}
	accessKeyID, day, region := scope[0], scope[1], scope[2]
	if accessKeyID != s.opts.AccessKeyID {
		return &apiError{status: http.StatusForbidden, code: "InvalidAccessKeyId",
			message: "The access key ID in the request is not known to this server.", accessKeyID: accessKeyID}
	}

	signDate, date, err := v4Date(r)
	if err != nil {
		return &apiError{status: http.StatusForbidden, code: "AccessDenied",
			message: "The x-oss-date and Date headers are missing or not valid dates."}
	}
	if apiErr := s.checkSkew(date); apiErr != nil {
		return apiErr
	}
	if day != date.UTC().Format("20060102") || region != s.opts.Region {
		return &apiError{status: http.StatusForbidden, code: "SignatureDoesNotMatch",
			message:     fmt.Sprintf("The credential scope names day %s and region %s; this request needs day %s and region %s.", day, region, date.UTC().Format("20060102"), s.opts.Region),
			accessKeyID: accessKeyID}
	}

	var additional []string
	if fields["AdditionalHeaders"] != "" {
		additional = strings.Split(fields["AdditionalHeaders"], ";")
	}
	canonicalRequest := v4CanonicalRequest(r, "/"+s.opts.Bucket+"/"+escapeV4Key(key), additional)
	requestHash := sha256.Sum256([]byte(canonicalRequest))
	stringToSign := v4Algorithm + "\n" + signDate + "\n" + day + "/" + region + "/oss/aliyun_v4_request\n" + hex.EncodeToString(requestHash[:])

	signingKey := []byte("aliyun_v4" + s.opts.AccessKeySecret)
	for _, part := range []string{day, region, "oss", "aliyun_v4_request", stringToSign} {
		mac := hmac.New(sha256.New, signingKey)
		mac.Write([]byte(part))
		signingKey = mac.Sum(nil)
	}
	got, err := hex.DecodeString(fields["Signature"])
	if err != nil || !hmac.Equal(got, signingKey) {
		return signatureMismatch(accessKeyID, stringToSign)
	}
	s.countSigned(true)
	return nil
}

// v4Date returns the date that a V4 signature signs, as sent, and its time.
func v4Date(r *http.Request) (string, time.Time, error) {
	if sent := r.Header.Get("X-Oss-Date"); sent != "" {
		date, err := time.Parse("20060102T150405Z", sent)
		return sent, date, err
	}
	sent := r.Header.Get("Date")
	date, err := http.ParseTime(sent)
	return sent, date, err
}

// v4CanonicalRequest builds the canonical request of a V4 signature for a
// request without a query.
func v4CanonicalRequest(r *http.Request, uri string, additional []string) string {
	signed := map[string]bool{"content-md5": true, "content-type": true}
	for _, name := range additional {
		signed[strings.ToLower(name)] = true
	}
	var names []string
	for name := range r.Header {
		if lower := strings.ToLower(name); signed[lower] || strings.HasPrefix(lower, "x-oss-") {
			names = append(names, lower)
		}
	}
	slices.Sort(names)

	var b strings.Builder
	b.WriteString(r.Method + "\n" + uri + "\n\n")
	for _, name := range names {
		b.WriteString(name + ":" + headerValue(r, name) + "\n")
	}
	b.WriteString("\n" + strings.Join(additional, ";") + "\n")
	payloadHash := r.Header.Get("X-Oss-Content-Sha256")
	if payloadHash == "" {
		payloadHash = "UNSIGNED-PAYLOAD"
	}
	b.WriteString(payloadHash)
	return b.String()
}

// escapeV4Key escapes an object key for a V4 canonical request: every byte
// but unreserved characters and '/' is percent-encoded, and a space
// becomes %20.
func escapeV4Key(key string) string {
	escaped := strings.ReplaceAll(url.QueryEscape(key), "+", "%20")
	return strings.ReplaceAll(escaped, "%2F", "/")
}

// headerValue returns the values of header name, trimmed and joined with
// commas. The SDK never repeats a header, so joining repeats is this
// server's choice.
func headerValue(r *http.Request, name string) string {
	values := slices.Clone(r.Header.Values(name))
	for i := range values {
		values[i] = strings.TrimSpace(values[i])
	}
	return strings.Join(values, ",")
}

// checkSkew rejects a request date more than maxClockSkew from the server
// clock.
func (s *Server) checkSkew(date time.Time) *apiError {
	if skew := s.opts.Now().Sub(date); skew > maxClockSkew || skew < -maxClockSkew {
		return &apiError{status: http.StatusForbidden, code: "RequestTimeTooSkewed",
			message: "The difference between the request time and the server's time is more than 15 minutes."}
	}
	return nil
}

func signatureMismatch(accessKeyID, stringToSign string) *apiError {
	return &apiError{status: http.StatusForbidden, code: "SignatureDoesNotMatch",
		message:     "The signature in the request does not match the one computed with the secret of its access key ID.",
		accessKeyID: accessKeyID, stringToSign: stringToSign}
}

// countSigned counts an authenticated request by its signature version.
func (s *Server) countSigned(v4 bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v4 {
		s.counts.SignedV4++
	} else {
		s.counts.SignedV1++
	}
}

func v1StringToSign(r *http.Request, canonicalizedResource string) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(r.Header.Get("Content-MD5") + "\n")
	b.WriteString(r.Header.Get("Content-Type") + "\n")
	b.WriteString(r.Header.Get("Date") + "\n")

	var names []string
	for name := range r.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-oss-") {
			names = append(names, lower)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		b.WriteString(name + ":" + headerValue(r, name) + "\n")
	}

	b.WriteString(canonicalizedResource)
	return b.String()
}

func md5Hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}
