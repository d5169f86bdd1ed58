SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
CREATE FUNCTION public.history_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
            BEGIN RAISE EXCEPTION 'history is append-only'; END $$;
SET default_tablespace = '';
SET default_table_access_method = heap;
CREATE TABLE public.alert_queue (
    id bigint NOT NULL,
    alerter text NOT NULL,
    alert text NOT NULL,
    queued_at double precision NOT NULL,
    claimed_by text,
    claimed_at double precision
);
ALTER TABLE public.alert_queue ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.alert_queue_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE public.decisions (
    id text NOT NULL,
    seq bigint NOT NULL,
    target text NOT NULL,
    rule text NOT NULL,
    action text NOT NULL,
    created_at double precision NOT NULL,
    context jsonb NOT NULL,
    status text NOT NULL,
    finished_at double precision,
    claimed_by text,
    claimed_at double precision,
    CONSTRAINT decisions_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'skipped'::text])))
);
ALTER TABLE public.decisions ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.decisions_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE public.history (
    id bigint NOT NULL,
    at double precision NOT NULL,
    target text NOT NULL,
    rule text,
    series jsonb NOT NULL,
    kind text NOT NULL,
    message text NOT NULL,
    data jsonb NOT NULL
);
ALTER TABLE public.history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE public.holds (
    target text NOT NULL,
    since double precision NOT NULL,
    decision_id text,
    version text,
    reason text NOT NULL
);
CREATE TABLE public.incidents (
    target text NOT NULL,
    state text NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE public.meta (
    key text NOT NULL,
    value text NOT NULL
);
CREATE TABLE public.releases (
    id bigint NOT NULL,
    target text NOT NULL,
    created_at double precision NOT NULL,
    components text NOT NULL,
    note text NOT NULL,
    origin text NOT NULL,
    state text NOT NULL
);
CREATE SEQUENCE public.releases_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.releases_id_seq OWNED BY public.releases.id;
CREATE TABLE public.replicas (
    replica_id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at double precision NOT NULL,
    last_seen double precision NOT NULL,
    backend_pid integer
);
CREATE TABLE public.rule_states (
    target text NOT NULL,
    rule text NOT NULL,
    series_key text NOT NULL,
    state text NOT NULL
);
CREATE TABLE public.steps (
    decision_id text NOT NULL,
    step_index integer NOT NULL,
    actuator text NOT NULL,
    status text NOT NULL,
    started_at double precision NOT NULL,
    finished_at double precision,
    message text NOT NULL,
    attempts integer NOT NULL,
    CONSTRAINT steps_status_check CHECK ((status = ANY (ARRAY['started'::text, 'succeeded'::text, 'failed'::text, 'skipped'::text])))
);
CREATE TABLE public.target_locks (
    lock_key bigint NOT NULL,
    target text NOT NULL
);
CREATE TABLE public.versions (
    target text NOT NULL,
    version text NOT NULL,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    seq bigint NOT NULL,
    bad boolean DEFAULT false NOT NULL,
    bad_reason text DEFAULT ''::text NOT NULL
);
ALTER TABLE ONLY public.releases ALTER COLUMN id SET DEFAULT nextval('public.releases_id_seq'::regclass);
INSERT INTO public.alert_queue OVERRIDING SYSTEM VALUE VALUES (1, 'ops', '{"a": 1}', 1700000020, NULL, NULL);
INSERT INTO public.decisions OVERRIDING SYSTEM VALUE VALUES ('d0', 1, 'fraud', 'p99', 'rollback', 1700000005, '{}', 'succeeded', 1700000006, NULL, NULL);
INSERT INTO public.decisions OVERRIDING SYSTEM VALUE VALUES ('d1', 2, 'fraud', 'p99', 'rollback', 1700000020, '{"value": 0.9}', 'running', NULL, 'mw-1', 1700000021);
INSERT INTO public.history OVERRIDING SYSTEM VALUE VALUES (1, 1700000020, 'fraud', 'p99', '{"pod": "a"}', 'decision', 'rolling back', '{"value": 0.9}');
INSERT INTO public.holds VALUES ('fraud', 1700000000, 'd1', 'v2', 'rolled back');
INSERT INTO public.incidents VALUES ('fraud', '{"phase": "acting"}', 1700000020);
INSERT INTO public.meta VALUES ('schema_version', '4');
INSERT INTO public.releases VALUES (1, 'fraud', 1700000000, '{"model": "fraud:7"}', 'initial', 'cli', 'bad');
INSERT INTO public.replicas VALUES ('mw-1', 'host-a', 42, 1700000000, 1700000000, 7537);
INSERT INTO public.rule_states VALUES ('fraud', 'p99', '{"pod":"a"}', '{"state":"firing"}');
INSERT INTO public.steps VALUES ('d1', 0, 'webhook', 'started', 1700000023, NULL, '', 2);
INSERT INTO public.target_locks VALUES (-1140653235283898811, 'fraud');
INSERT INTO public.versions VALUES ('fraud', 'v1', 1700000000, 1700000000, 1, false, '');
INSERT INTO public.versions VALUES ('fraud', 'v2', 1700000010, 1700000010, 2, true, 'p99 900ms');
SELECT pg_catalog.setval('public.alert_queue_id_seq', 1, true);
SELECT pg_catalog.setval('public.decisions_seq_seq', 2, true);
SELECT pg_catalog.setval('public.history_id_seq', 1, true);
SELECT pg_catalog.setval('public.releases_id_seq', 1, true);
ALTER TABLE ONLY public.alert_queue
    ADD CONSTRAINT alert_queue_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.decisions
    ADD CONSTRAINT decisions_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.decisions
    ADD CONSTRAINT decisions_seq_key UNIQUE (seq);
ALTER TABLE ONLY public.history
    ADD CONSTRAINT history_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.holds
    ADD CONSTRAINT holds_pkey PRIMARY KEY (target);
ALTER TABLE ONLY public.incidents
    ADD CONSTRAINT incidents_pkey PRIMARY KEY (target);
ALTER TABLE ONLY public.meta
    ADD CONSTRAINT meta_pkey PRIMARY KEY (key);
ALTER TABLE ONLY public.releases
    ADD CONSTRAINT releases_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.replicas
    ADD CONSTRAINT replicas_pkey PRIMARY KEY (replica_id);
ALTER TABLE ONLY public.rule_states
    ADD CONSTRAINT rule_states_pkey PRIMARY KEY (target, rule, series_key);
ALTER TABLE ONLY public.steps
    ADD CONSTRAINT steps_pkey PRIMARY KEY (decision_id, step_index);
ALTER TABLE ONLY public.target_locks
    ADD CONSTRAINT target_locks_pkey PRIMARY KEY (lock_key);
ALTER TABLE ONLY public.target_locks
    ADD CONSTRAINT target_locks_target_key UNIQUE (target);
ALTER TABLE ONLY public.versions
    ADD CONSTRAINT versions_pkey PRIMARY KEY (target, version);
CREATE INDEX decisions_by_status ON public.decisions USING btree (status, created_at);
CREATE INDEX decisions_by_target ON public.decisions USING btree (target, created_at);
CREATE INDEX history_by_kind ON public.history USING btree (kind, id);
CREATE INDEX history_by_target ON public.history USING btree (target, id);
CREATE INDEX releases_by_target ON public.releases USING btree (target, id);
CREATE TRIGGER history_no_change BEFORE DELETE OR UPDATE ON public.history FOR EACH ROW EXECUTE FUNCTION public.history_append_only();
CREATE TRIGGER history_no_truncate BEFORE TRUNCATE ON public.history FOR EACH STATEMENT EXECUTE FUNCTION public.history_append_only();
ALTER TABLE ONLY public.steps
    ADD CONSTRAINT steps_decision_id_fkey FOREIGN KEY (decision_id) REFERENCES public.decisions(id);
