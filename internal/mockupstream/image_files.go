package mockupstream

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

const (
	mockFilesPrefix = "/v1/mock-files/"

	// oversizedDownloadBytes is how many filler bytes the url-oversized
	// fault sends after the PNG, unless the client leaves first.
	oversizedDownloadBytes = 1 << 30
)

// mockFileURL returns the absolute URL of the image of spec on the host
// that r addressed. The file name encodes the spec and the download fault,
// so the server regenerates the PNG on download and stores nothing.
func mockFileURL(r *http.Request, spec imageSpec, downloadFault fault) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}

	name := fmt.Sprintf("%016x-%dx%d-%d", spec.seed, spec.width, spec.height, spec.padTo)
	if downloadFault != faultNone {
		name += "-" + strings.TrimPrefix(string(downloadFault), "url-")
	}
	return scheme + "://" + r.Host + mockFilesPrefix + name + ".png"
}

// parseMockFileName reverses mockFileURL for the part after mockFilesPrefix.
// It rejects specs that mockFileURL cannot produce, so a made-up name cannot
// make the server allocate more than one maxImageBytes image.
func parseMockFileName(name string) (imageSpec, fault, bool) {
	var spec imageSpec

	base, ok := strings.CutSuffix(name, ".png")
	if !ok {
		return spec, faultNone, false
	}
	fields := strings.Split(base, "-")
	if len(fields) != 3 && len(fields) != 4 {
		return spec, faultNone, false
	}

	seed, err := strconv.ParseUint(fields[0], 16, 64)
	if err != nil || len(fields[0]) != 16 {
		return spec, faultNone, false
	}
	width, height, err := parseDimensions(fields[1], "x", maxImageSide)
	if err != nil || width*height > maxImageBytes/3 {
		return spec, faultNone, false
	}
	padTo, err := strconv.Atoi(fields[2])
	if err != nil || padTo < 0 || padTo > maxImageBytes || padTo > 0 && padTo < maxPNGLen(width, height)+textChunkOverhead {
		return spec, faultNone, false
	}

	downloadFault := faultNone
	if len(fields) == 4 {
		f, ok := parseFault("url-" + fields[3])
		if !ok || !f.isDownloadFault() {
			return spec, faultNone, false
		}
		downloadFault = f
	}

	spec = imageSpec{seed: seed, width: width, height: height, padTo: padTo}
	return spec, downloadFault, true
}

// serveMockFile serves GET /v1/mock-files/{name}.png with the PNG that the
// name describes, or the download fault that it carries.
func (h *Handler) serveMockFile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	if r.Method != http.MethodGet {
		writeAPIError(w, methodNotAllowed(r, http.MethodGet))
		return
	}

	spec, downloadFault, ok := parseMockFileName(strings.TrimPrefix(r.URL.Path, mockFilesPrefix))
	if !ok || downloadFault == faultURLNotFound {
		message := fmt.Sprintf("File %s not found.", r.URL.Path)
		if ok {
			message = fmt.Sprintf("File %s not found (injected by the mock upstream).", r.URL.Path)
		}
		writeAPIError(w, &apiError{status: http.StatusNotFound, errType: "invalid_request_error", message: message})
		return
	}

	w.Header().Set("Content-Type", "image/png")
	rc := http.NewResponseController(w)

	if downloadFault == faultURLStall {
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			h.logImageStopped(ctx, mockFilesPrefix, err)
			return
		}
		<-ctx.Done()
		return
	}

	encoded, err := spec.encode()
	if err != nil {
		h.logger.ErrorContext(ctx, "image download failed", "path", r.URL.Path, "error", err)
		writeAPIError(w, &apiError{status: http.StatusInternalServerError, errType: "server_error", message: err.Error()})
		return
	}

	if downloadFault != faultURLOversized {
		w.Header().Set("Content-Length", strconv.Itoa(len(encoded)))
	}
	if _, err := w.Write(encoded); err != nil {
		h.logImageStopped(ctx, mockFilesPrefix, err)
		return
	}
	if downloadFault != faultURLOversized {
		return
	}

	// Without a Content-Length, only the client's own cap stops the read.
	filler := make([]byte, 32<<10)
	for sent := 0; sent < oversizedDownloadBytes; sent += len(filler) {
		if _, err := w.Write(filler); err != nil {
			h.logImageStopped(ctx, mockFilesPrefix, err)
			return
		}
	}
}
