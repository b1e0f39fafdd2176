package routes

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// hangups is one epoll set, read by one goroutine, that tells detached
// streams their client has gone: EPOLLRDHUP (the client closed its side),
// or an error or hangup of the socket. A stream never reads, so this is
// all that is asked of the socket until the stream ends.
var hangups struct {
	once   sync.Once
	epfd   int
	err    error
	mu     sync.Mutex
	next   uint64
	tokens map[uint64]func()
}

func startHangupWatcher() {
	hangups.epfd, hangups.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if hangups.err != nil {
		slog.Warn("streams: epoll unavailable; one reader goroutine per stream instead", "err", hangups.err)
		return
	}
	hangups.tokens = map[uint64]func(){}
	go func() {
		events := make([]syscall.EpollEvent, 256)
		for {
			n, err := syscall.EpollWait(hangups.epfd, events, -1)
			if err != nil {
				if err == syscall.EINTR {
					continue
				}
				slog.Error("streams: epoll_wait failed; hangups are noticed on the next write", "err", err)
				return
			}
			var gone []func()
			hangups.mu.Lock()
			for i := range events[:n] {
				token := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
				if f, ok := hangups.tokens[token]; ok {
					delete(hangups.tokens, token)
					gone = append(gone, f)
				}
			}
			hangups.mu.Unlock()
			for _, f := range gone {
				f()
			}
		}
	}()
}

// watchHangup calls gone (once, from the watcher) when the client hangs
// up. The function it returns stops watching; call it before closing conn.
func watchHangup(conn net.Conn, gone func()) func() {
	hangups.once.Do(startHangupWatcher)
	sc, ok := conn.(syscall.Conn)
	if hangups.err != nil || !ok {
		return readHangup(conn, gone)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return readHangup(conn, gone)
	}
	hangups.mu.Lock()
	hangups.next++
	token := hangups.next
	hangups.tokens[token] = gone
	hangups.mu.Unlock()
	// One shot: once reported, the socket is left alone until unwatched.
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	var ctlErr error
	err = raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(hangups.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || ctlErr != nil {
		hangups.mu.Lock()
		delete(hangups.tokens, token)
		hangups.mu.Unlock()
		return readHangup(conn, gone)
	}
	return func() {
		hangups.mu.Lock()
		delete(hangups.tokens, token)
		hangups.mu.Unlock()
		_ = raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(hangups.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
}
