package routes

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"papo/app"
)

// metrics is papo's Prometheus registry. It is its own registry, not the
// global one, so that several servers in one test process do not collide.
type metrics struct {
	reg      *prometheus.Registry
	latency  *prometheus.HistogramVec
	failures prometheus.Counter

	mu        sync.RWMutex
	observers map[latencyKey]prometheus.Observer
}

func newMetrics(a *app.App) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg:       reg,
		observers: map[latencyKey]prometheus.Observer{},
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "papo_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status (streams: their whole life).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "papo_database_errors_total",
			Help: "Requests answered 503 because the database failed.",
		}),
	}
	stats := a.Hub.Stats()
	stored := prometheus.NewCounter(prometheus.CounterOpts{Name: "papo_messages_stored_total", Help: "Messages committed by this instance."})
	batches := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "papo_store_batch_size", Help: "Messages per commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}})
	a.ObserveStores(func(n int) { stored.Add(float64(n)) }, func(n int) { batches.Observe(float64(n)) })
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.latency, m.failures, stored, batches,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "papo_streams_open", Help: "Open event streams on this instance."},
			func() float64 { return float64(stats.Subscriptions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "papo_events_sent_total", Help: "Events queued to streams."},
			func() float64 { return float64(stats.EventsSent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "papo_events_dropped_total", Help: "Streams dropped for falling behind."},
			func() float64 { return float64(stats.Dropped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "papo_gap_fills_total", Help: "Times missing messages were read from the database."},
			func() float64 { return float64(stats.GapFills.Load()) }),
	)
	if _, configured := a.RedisUp(); configured {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "papo_redis_up",
			Help: "1 while Redis serves this instance (fan-out subscription live, presence recorded in Redis), 0 during an outage."},
			func() float64 {
				if up, _ := a.RedisUp(); up {
					return 1
				}
				return 0
			}))
	}
	return m
}

// observe records one request's latency. Each route, method and status
// has its observer looked up once, not per request: checking and hashing
// the labels every time was 2 % of the server's CPU while thousands of
// streams connected.
func (m *metrics) observe(route string, method string, status int, d time.Duration) {
	k := latencyKey{route: route, method: methodLabel(method), status: status}
	m.mu.RLock()
	o := m.observers[k]
	m.mu.RUnlock()
	if o == nil {
		o = m.latency.WithLabelValues(k.route, k.method, strconv.Itoa(status))
		m.mu.Lock()
		m.observers[k] = o
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
	if status == 503 {
		m.failures.Inc()
	}
}

// latencyKey names one series of the latency histogram. Routes are papo's
// own and statuses the ones it answers; methods are the client's choice,
// so methodLabel keeps their number small too.
type latencyKey struct {
	route, method string
	status        int
}

// methodLabel is method when it is a standard one, else "other", so that
// made-up methods cannot each add a series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

func (m *metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}
