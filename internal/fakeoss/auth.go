package fakeoss

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
)

// authenticate checks r's V1 signature and returns nil when it is valid.
// key is the object key decoded from the path.
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
func (s *Server) authenticate(r *http.Request, key string) *apiError {
	authorization := r.Header.Get("Authorization")
	if authorization == "" {
		return &apiError{status: http.StatusForbidden, code: "AccessDenied",
			message: "The bucket is private and the request has no Authorization header."}
	}
	credentials, ok := strings.CutPrefix(authorization, "OSS ")
	if !ok {
		return &apiError{status: http.StatusBadRequest, code: "InvalidArgument",
			message: "fakeoss checks only V1 signatures (Authorization: OSS <AccessKeyId>:<Signature>)."}
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
	if skew := s.opts.Now().Sub(date); skew > maxClockSkew || skew < -maxClockSkew {
		return &apiError{status: http.StatusForbidden, code: "RequestTimeTooSkewed",
			message: "The difference between the request time and the server's time is more than 15 minutes."}
	}

	stringToSign := v1StringToSign(r, "/"+s.opts.Bucket+"/"+key)
	mac := hmac.New(sha1.New, []byte(s.opts.AccessKeySecret))
	mac.Write([]byte(stringToSign))
	got, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return &apiError{status: http.StatusForbidden, code: "SignatureDoesNotMatch",
			message:     "The signature in the request does not match the one computed with the secret of its access key ID.",
			accessKeyID: accessKeyID, stringToSign: stringToSign}
	}
	return nil
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
		// The SDK never repeats a header. Joining repeats with commas is
		// this server's choice, as the V1 description leaves it open.
		values := slices.Clone(r.Header.Values(name))
		for i := range values {
			values[i] = strings.TrimSpace(values[i])
		}
		b.WriteString(name + ":" + strings.Join(values, ",") + "\n")
	}

	b.WriteString(canonicalizedResource)
	return b.String()
}

func md5Hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}
