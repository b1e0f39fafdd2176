package app

import "context"

// Broker carries envelopes between the instances that share a database.
// A hub always delivers its own envelopes locally; the broker only has to
// bring those of the other instances. It may lose some (the hub fills
// message gaps from the database), but must not reorder the envelopes of
// one publisher.
type Broker interface {
	// Subscribe starts handing every envelope published by any instance to
	// handle, and returns once the subscription is live.
	Subscribe(ctx context.Context, handle func(Envelope)) error
	// Publish sends envelopes, in order, to every instance.
	Publish(ctx context.Context, envs ...Envelope) error
	// Ping tells whether the broker answers, for /readyz.
	Ping(ctx context.Context) error
	Close() error
}

// LocalBroker is the broker of a single instance: there is no one else to
// tell, so it carries nothing.
type LocalBroker struct{}

func (LocalBroker) Subscribe(context.Context, func(Envelope)) error { return nil }
func (LocalBroker) Publish(context.Context, ...Envelope) error      { return nil }
func (LocalBroker) Ping(context.Context) error                      { return nil }
func (LocalBroker) Close() error                                    { return nil }
