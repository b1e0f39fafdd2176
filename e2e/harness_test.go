package e2e

// The harness: a real papo process per test, and one headless Chromium per
// test run in which every browser user gets a browser context of its own.
//
// Server side, for any end-to-end test (not only browser ones):
//
//	srv := StartServer(t)                         // fresh SQLite, limits off
//	srv := StartServer(t, "REDIS_URL=redis://…")  // env entries override defaults
//	srv.Stop(); srv.Restart(); srv.Kill()         // SIGTERM, start again, kill -9
//	ana := srv.Register(t, "ana")                 // an HTTP client with a session
//	ana.Say(t, "general", "hello")
//
// Several instances share one database when they get the same DATABASE_URL:
//
//	a := StartServer(t, "REDIS_URL="+redis)
//	b := StartServer(t, "REDIS_URL="+redis, "DATABASE_URL="+a.DatabaseURL)
//
// Browser side, see NewUser, User.NewTab and the Tab methods.
//
// Environment:
//
//	PAPO_CHROMIUM=path       the browser (default /usr/bin/chromium)
//	PAPO_TEST_STRICT=1       fail, not skip, when there is no browser
//	PAPO_ARTIFACTS=dir       where failures leave screenshots, console and server logs
//	PAPO_E2E_RACE=1          build the server with -race
//	PAPO_E2E_SCREENSHOTS=1   also save screenshots of passing browser tests

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const (
	// waitTimeout bounds every wait for a condition. It is generous on
	// purpose: the tests never assert on timing, only on what happens.
	waitTimeout = 30 * time.Second
	// testPassword is what every test user logs in with.
	testPassword = "correcthorse"
)

// runDir holds what lives for the whole run: the server binary and the
// browser profile. TestMain removes it.
var runDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "papo-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	runDir = dir
	code := m.Run()
	stopBrowser()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The server under test

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// serverBinary builds the repository root once per run. PAPO_E2E_RACE=1
// builds it with the race detector, to look for races in the server too.
func serverBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(runDir, "papo")
		args := []string{"build", "-o", binary}
		if os.Getenv("PAPO_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build of the server: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Server is one papo process. Stop, Kill and Restart keep its address and
// database, so a restarted server is the same server to its clients.
type Server struct {
	URL         string // http://127.0.0.1:PORT, or https:// with PAPO_TLS_CERT
	Addr        string // 127.0.0.1:PORT
	DatabaseURL string

	t    testing.TB
	name string // for log and artifact file names
	env  []string
	dir  string // working directory: no stray .env or papo.db from the repo
	log  *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

var serverCount struct {
	sync.Mutex
	n int
}

// StartServer starts papo on a free port with a fresh SQLite database, a
// short leave grace and every limit off. Each env entry, "KEY=value",
// overrides a default (DATABASE_URL and PAPO_ADDR too). The server is
// stopped when the test ends, and its log is saved as an artifact when the
// test failed.
func StartServer(t testing.TB, env ...string) *Server {
	t.Helper()
	serverBinary(t) // build first: a compile error should be the first thing reported
	dir := t.TempDir()
	defaults := []string{
		"PAPO_ADDR=" + freeAddr(t),
		"DATABASE_URL=sqlite:" + filepath.Join(dir, "papo.db"),
		"PAPO_LEAVE_GRACE=300ms",
		"PAPO_LIMITS=off",
		// Empty unless the test asks: an outer environment must not
		// point the test server at a real database or broker.
		"REDIS_URL=",
		"SESSION_SECRET=",
		"PAPO_TLS_CERT=",
		"PAPO_TLS_KEY=",
	}
	all := append(append(os.Environ(), defaults...), env...)

	serverCount.Lock()
	serverCount.n++
	name := fmt.Sprintf("server%d", serverCount.n)
	serverCount.Unlock()

	s := &Server{
		t:           t,
		name:        name,
		env:         all,
		dir:         dir,
		log:         &syncBuffer{},
		Addr:        lookupEnv(all, "PAPO_ADDR"),
		DatabaseURL: lookupEnv(all, "DATABASE_URL"),
	}
	scheme := "http"
	if lookupEnv(all, "PAPO_TLS_CERT") != "" {
		scheme = "https"
	}
	s.URL = scheme + "://" + s.Addr
	t.Cleanup(func() {
		if s.running() {
			s.Stop()
		}
		if t.Failed() {
			saveArtifact(t, s.name+".log", s.log.Bytes())
		}
	})
	s.start()
	return s
}

// Stop sends SIGTERM and waits for the process to exit, as an orchestrator
// would; after 15 s it kills the process.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM, 15*time.Second)
}

// Kill ends the process with SIGKILL: no graceful shutdown at all.
func (s *Server) Kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL, 15*time.Second)
}

// Restart stops the server if it runs, and starts it again on the same
// address and database.
func (s *Server) Restart() {
	s.t.Helper()
	if s.running() {
		s.Stop()
	}
	s.start()
}

// Log returns what the server has written to stdout and stderr so far.
func (s *Server) Log() string { return s.log.String() }

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(serverBinary(s.t))
	cmd.Env = s.env
	cmd.Dir = s.dir
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting papo: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	s.waitHealthy(done)
}

// waitHealthy polls /healthz until it answers 200, and fails the test at
// once if the process exits first.
func (s *Server) waitHealthy(done <-chan struct{}) {
	s.t.Helper()
	client := insecureClient(time.Second)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.t.Fatalf("papo exited during start-up:\n%s", s.log.String())
		default:
		}
		resp, err := client.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("papo did not answer /healthz on %s within %v:\n%s", s.URL, waitTimeout, s.log.String())
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *Server) signal(sig syscall.Signal, grace time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		s.t.Errorf("papo did not exit within %v of %v", grace, sig)
	}
}

// TLSEnv makes a self-signed certificate for 127.0.0.1 and returns the env
// entries that make StartServer serve HTTPS (and so HTTP/2) with it.
func TLSEnv(t testing.TB) []string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "papo test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return []string{"PAPO_TLS_CERT=" + certFile, "PAPO_TLS_KEY=" + keyFile}
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeAddr finds a port that is free now. Another process could take it
// before papo binds it, but on a test machine that is rare enough.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lookupEnv returns the last value of key in env, as exec.Cmd would use it.
func lookupEnv(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v
		}
	}
	return value
}

// insecureClient accepts the self-signed certificates of TLS test servers.
func insecureClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}

// syncBuffer is a bytes.Buffer that the process's output goroutines and the
// test can use at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }

// ---------------------------------------------------------------------------
// An HTTP client of the contract, for seeding and for scripted users

// Client is a user of the HTTP API with its own session cookie. BaseURL can
// be pointed at another instance: the cookie is for the host, not the port.
type Client struct {
	BaseURL  string
	Username string
	HTTP     *http.Client
}

// Register creates the user (password testPassword) and returns a client
// logged in as them.
func (s *Server) Register(t testing.TB, username string) *Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &Client{BaseURL: s.URL, Username: username, HTTP: insecureClient(30 * time.Second)}
	c.HTTP.Jar = jar
	status, body := c.Post(t, "/register", url.Values{"username": {username}, "password": {testPassword}})
	if status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", username, status, body)
	}
	return c
}

// Post sends form fields and returns the status and body.
func (c *Client) Post(t testing.TB, path string, form url.Values) (int, []byte) {
	t.Helper()
	resp, err := c.HTTP.PostForm(c.BaseURL+path, form)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// Get returns the status and body of a GET.
func (c *Client) Get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := c.HTTP.Get(c.BaseURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// Say posts a message (or a command) to room and fails the test unless the
// server took it.
func (c *Client) Say(t testing.TB, room, text string) {
	t.Helper()
	status, body := c.Post(t, "/rooms/"+room+"/messages", url.Values{"message": {text}})
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("%s says %q in %s: %d %s", c.Username, text, room, status, body)
	}
}

// Metric returns the value of an unlabelled metric from GET /metrics, and
// whether it was there.
func (s *Server) Metric(t testing.TB, name string) (float64, bool) {
	t.Helper()
	resp, err := insecureClient(10 * time.Second).Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == name {
			v, err := strconv.ParseFloat(fields[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// WaitMetric polls an unlabelled metric until it equals want.
func (s *Server) WaitMetric(t testing.TB, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got, ok := s.Metric(t, name)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s: got %v (present: %v), want %v", name, got, ok, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// The browser

// chromiumPath is Debian's Chromium, which .ci/run installs; PAPO_CHROMIUM
// points elsewhere.
func chromiumPath() string {
	if p := os.Getenv("PAPO_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

var browserState struct {
	once   sync.Once
	ctx    context.Context // the first tab; users are children of it
	cancel context.CancelFunc
	err    error
}

// requireBrowser returns the shared browser, starting it on first use. A
// missing Chromium skips the test, unless PAPO_TEST_STRICT=1 where a
// skipped browser test would hide a broken CI image.
func requireBrowser(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath()); err != nil {
		msg := fmt.Sprintf("no Chromium at %s (install Debian's chromium, or set PAPO_CHROMIUM): %v", chromiumPath(), err)
		if os.Getenv("PAPO_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b := &browserState
	b.once.Do(func() {
		opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
			chromedp.ExecPath(chromiumPath()),
			chromedp.UserDataDir(filepath.Join(runDir, "chromium-profile")),
			chromedp.WindowSize(1100, 800),
			chromedp.NoSandbox,
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			// The HTTPS test serves a self-signed certificate.
			chromedp.Flag("ignore-certificate-errors", true),
			// Many tabs run at once; none of them may be slowed down for
			// being in the background.
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true),
		)
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(allocCtx)
		if err := chromedp.Do(ctx); err != nil {
			cancel()
			cancelAlloc()
			b.err = fmt.Errorf("starting Chromium: %w", err)
			return
		}
		b.ctx = ctx
		b.cancel = func() { cancel(); cancelAlloc() }
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.ctx
}

func stopBrowser() {
	if browserState.cancel != nil {
		browserState.cancel()
	}
}

// User is one person in the browser: a browser context of their own, so
// cookies, storage, BroadcastChannels and Web Locks are theirs alone, like
// a separate browser profile.
type User struct {
	Name string
	srv  *Server
	t    testing.TB
	ctx  context.Context // a blank holder tab that keeps the browser context
	tabs int
}

// NewUser opens a fresh browser context. The user has no account yet; see
// Tab.Register.
func NewUser(t testing.TB, srv *Server, name string) *User {
	t.Helper()
	parent := requireBrowser(t)
	// The context's own tab is never used for pages: closing a context's
	// first tab would dispose of the whole browser context, and the
	// many-tabs test must be able to close any single page.
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("new browser context for %s: %v", name, err)
	}
	t.Cleanup(cancel)
	return &User{Name: name, srv: srv, t: t, ctx: ctx}
}

// Tab is one page of a User.
type Tab struct {
	Name string // "ana/1": user and tab number, for messages and artifacts
	user *User
	t    testing.TB
	ctx  context.Context

	closeOnce sync.Once
	cancel    context.CancelFunc
	closed    chan struct{}

	mu      sync.Mutex
	console []string
}

// NewTab opens a new tab (in its own window, so that no tab is hidden and
// throttled) at about:blank. When the test fails, the tab's screenshot and
// console log are saved as artifacts.
func (u *User) NewTab() *Tab {
	u.t.Helper()
	return u.newTab()
}

// NewTabInWindow opens a tab in an existing window of the user, in front
// of the tab that was showing there, which the browser then hides
// (document.hidden), as when a person switches tabs.
func (u *User) NewTabInWindow() *Tab {
	u.t.Helper()
	return u.newTab(chromedp.WithNewWindow(false))
}

func (u *User) newTab(opts ...chromedp.ContextOption) *Tab {
	u.t.Helper()
	u.tabs++
	ctx, cancel := chromedp.NewContext(u.ctx, opts...)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		u.t.Fatalf("new tab for %s: %v", u.Name, err)
	}
	tab := &Tab{Name: fmt.Sprintf("%s/%d", u.Name, u.tabs), user: u, t: u.t, ctx: ctx, cancel: cancel, closed: make(chan struct{})}
	go tab.collectConsole()
	// Cleanups run last-registered first: save the artifacts, then close.
	u.t.Cleanup(tab.Close)
	u.t.Cleanup(tab.saveArtifacts)
	return tab
}

// Activate brings the tab to the front of its window.
func (tab *Tab) Activate() {
	tab.t.Helper()
	tab.Do("bring to front", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.BringToFront, cdp.Empty{})
		return err
	}))
}

// Close closes the tab, as a user closing it would.
func (tab *Tab) Close() {
	tab.closeOnce.Do(func() {
		close(tab.closed)
		tab.cancel()
	})
}

func (tab *Tab) collectConsole() {
	for m, err := range chromedp.Console(tab.ctx) {
		if err != nil {
			return
		}
		line := fmt.Sprintf("%s %s", m.Time.Format("15:04:05.000"), m.String())
		if m.URL != "" {
			line += fmt.Sprintf("  (%s:%d)", m.URL, m.Line+1)
		}
		tab.mu.Lock()
		tab.console = append(tab.console, line)
		tab.mu.Unlock()
	}
}

// Console returns the console lines seen so far.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return slices.Clone(tab.console)
}

func (tab *Tab) saveArtifacts() {
	if !tab.t.Failed() {
		return
	}
	base := strings.ReplaceAll(tab.Name, "/", "-tab")
	select {
	case <-tab.closed:
	default:
		ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
		defer cancel()
		if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
			saveArtifact(tab.t, base+".png", png)
		} else {
			tab.t.Logf("%s: no screenshot: %v", tab.Name, err)
		}
	}
	saveArtifact(tab.t, base+".console.txt", []byte(strings.Join(tab.Console(), "\n")+"\n"))
}

// Do runs chromedp actions in the tab, failing the test on error.
func (tab *Tab) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tab.t.Fatalf("%s: %s: %v", tab.Name, what, err)
	}
}

// Open navigates to a path of the server, such as "/r/general".
func (tab *Tab) Open(path string) {
	tab.t.Helper()
	tab.Do("open "+path, chromedp.Navigate(tab.user.srv.URL+path))
}

// Eval evaluates a JavaScript expression in the page and decodes its value.
// A promise needs chromedp.EvalAwaitPromise among opts.
func Eval[T any](tab *Tab, expr string, opts ...chromedp.EvaluateOption) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tab.t.Fatalf("%s: evaluating %s: %v", tab.Name, expr, err)
	}
	return v
}

// Wait polls a JavaScript condition until it is true. It keeps polling
// through navigations and page errors, which come and go while a page loads;
// what fails the test is only the condition staying false for waitTimeout.
func (tab *Tab) Wait(what, cond string) {
	tab.t.Helper()
	if err := tab.poll(cond, waitTimeout); err != nil {
		tab.t.Fatalf("%s: waiting for %s: %v", tab.Name, what, err)
	}
}

func (tab *Tab) poll(cond string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	expr := fmt.Sprintf("(() => { try { return !!(%s); } catch { return false; } })()", cond)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(tab.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		if tab.ctx.Err() != nil {
			return tab.ctx.Err()
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("still false after %v (last error: %w)", timeout, lastErr)
			}
			return fmt.Errorf("still false after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Type sends keystrokes to the element, as a person typing would.
func (tab *Tab) Type(sel, text string) {
	tab.t.Helper()
	tab.Do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// Press presses one key on the focused element as a keyboard does: a
// keydown, then a char event when text is not empty, then a keyup. Like a
// real keyboard, the browser drops the char when the page's keydown handler
// cancels the key; otherwise the char is what types a line break or submits
// a one-line form. (chromedp.SendKeys sends its keydown with the text
// attached, so a cancelled Enter still typed a stray newline.)
func (tab *Tab) Press(key string, code int64, text string, mods chromedp.Modifier) {
	tab.t.Helper()
	event := func(typ input.DispatchKeyEventType, text string) input.DispatchKeyEventParams {
		return input.DispatchKeyEventParams{
			Type: typ, Key: key, Code: key, Text: text, Modifiers: int64(mods),
			WindowsVirtualKeyCode: code, NativeVirtualKeyCode: code,
		}
	}
	events := []input.DispatchKeyEventParams{event(input.DispatchKeyEventTypeRawKeyDown, "")}
	if text != "" {
		events = append(events, event(input.DispatchKeyEventTypeChar, text))
	}
	events = append(events, event(input.DispatchKeyEventTypeKeyUp, ""))
	press := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, ev := range events {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
				return err
			}
		}
		return nil
	})
	tab.Do("press "+key, press)
}

// Enter presses Enter; ShiftEnter, Shift+Enter; Escape and ArrowDown, those.
func (tab *Tab) Enter()      { tab.t.Helper(); tab.Press("Enter", 13, "\r", 0) }
func (tab *Tab) ShiftEnter() { tab.t.Helper(); tab.Press("Enter", 13, "\r", chromedp.ModifierShift) }
func (tab *Tab) Escape()     { tab.t.Helper(); tab.Press("Escape", 27, "", 0) }
func (tab *Tab) ArrowDown()  { tab.t.Helper(); tab.Press("ArrowDown", 40, "", 0) }

// EmulateLanguage makes navigator.languages (and Accept-Language) of this
// tab the given list, from the next page load on.
func (tab *Tab) EmulateLanguage(languages string) {
	tab.t.Helper()
	ua := Eval[string](tab, "navigator.userAgent")
	set := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
			UserAgent: ua, AcceptLanguage: languages,
		})
		return err
	})
	tab.Do("emulate language "+languages, set)
}

// Screenshot saves a PNG of the tab as an artifact and returns its path.
func (tab *Tab) Screenshot(name string) string {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tab.t.Fatalf("%s: screenshot: %v", tab.Name, err)
	}
	return saveArtifact(tab.t, name, png)
}

// Exceptions returns the uncaught exceptions the page has logged.
func (tab *Tab) Exceptions() []string {
	var out []string
	for _, line := range tab.Console() {
		if strings.Contains(line, " "+string(chromedp.ConsoleException)+": ") {
			out = append(out, line)
		}
	}
	return out
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Artifacts

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// artifactDir is where a test's screenshots, console logs and server logs
// go: $PAPO_ARTIFACTS/<test>, or a directory under the system's temp
// directory that outlives the run (t.TempDir would delete it with the test).
func artifactDir(t testing.TB) string {
	base := os.Getenv("PAPO_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "papo-e2e-artifacts")
	}
	dir := filepath.Join(base, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
	}
	return dir
}

func saveArtifact(t testing.TB, name string, data []byte) string {
	path := filepath.Join(artifactDir(t), unsafeName.ReplaceAllString(name, "_"))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Logf("artifact %s: %v", name, err)
		return ""
	}
	t.Logf("artifact: %s", path)
	return path
}
