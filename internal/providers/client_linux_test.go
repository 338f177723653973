package providers

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listenWithFullBacklog returns the address of a loopback socket that
// listens with a backlog of 0, never accepts, and already has a full accept
// queue. Linux drops the SYN of any further connect, so that connect hangs.
func listenWithFullBacklog(t *testing.T) string {
	t.Helper()

	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })

	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sockaddr, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(sockaddr.(*syscall.SockaddrInet4).Port))

	for range 8 {
		conn, err := net.DialTimeout("tcp", address, 100*time.Millisecond)
		if err != nil {
			return address
		}
		t.Cleanup(func() { conn.Close() })
	}
	t.Skip("the kernel completed every connect to the full backlog, so no connect can time out")
	return ""
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	address := listenWithFullBacklog(t)
	client := newTestClient(t, ClientOptions{ConnectTimeout: 200 * time.Millisecond, FirstByteTimeout: 5 * time.Second})
	provider := Provider{ID: "stuck", BaseURL: "http://" + address + "/v1", APIKey: testAPIKey}

	start := time.Now()
	_, err := client.Chat(context.Background(), provider, testRequest())
	elapsed := time.Since(start)

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorTimeout {
		t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorTimeout, err)
	}
	if !strings.Contains(upstreamErr.Message, "connect timed out") {
		t.Errorf("Message = %q, want it to mention the connect timeout", upstreamErr.Message)
	}
	if elapsed > 2*time.Second {
		t.Errorf("call took %s, want about 200ms", elapsed)
	}
}
