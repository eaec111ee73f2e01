-- Durable subscriptions: consumer_id receives what producer_id streams.
CREATE TABLE subscriptions (
    consumer_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    producer_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_id, producer_id)
);

CREATE INDEX subscriptions_producer ON subscriptions (producer_id, consumer_id);

-- The highest sequence number handed out per producer, saved now and then (not per message),
-- so that a Redis that lost its data cannot make sequence numbers repeat.
CREATE TABLE producer_streams (
    producer_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq    BIGINT NOT NULL CHECK (last_seq >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
