BEGIN TRANSACTION;
CREATE TABLE alert_queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT, alerter TEXT NOT NULL, alert TEXT NOT NULL,
            queued_at REAL NOT NULL, claimed_by TEXT, claimed_at REAL);
INSERT INTO "alert_queue" VALUES(1,'ops','{"a": 1}',1700000020.0,NULL,NULL);
CREATE TABLE decisions (
            id TEXT PRIMARY KEY, target TEXT NOT NULL, rule TEXT NOT NULL,
            action TEXT NOT NULL, created_at REAL NOT NULL, context TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
            finished_at REAL, claimed_by TEXT, claimed_at REAL);
INSERT INTO "decisions" VALUES('d0','fraud','p99','rollback',1700000005.0,'{}','succeeded',1700000006.0,NULL,NULL);
INSERT INTO "decisions" VALUES('d1','fraud','p99','rollback',1700000020.0,'{"value": 0.9}','running',NULL,'mw-1',1700000021.0);
CREATE TABLE history (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, target TEXT NOT NULL,
            rule TEXT, series TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
            data TEXT NOT NULL);
INSERT INTO "history" VALUES(1,1700000020.0,'fraud','p99','{"pod": "a"}','decision','rolling back','{"value": 0.9}');
CREATE TABLE holds (
            target TEXT PRIMARY KEY, since REAL NOT NULL, decision_id TEXT, version TEXT,
            reason TEXT NOT NULL);
INSERT INTO "holds" VALUES('fraud',1700000000.0,'d1','v2','rolled back');
CREATE TABLE incidents (
            target TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
INSERT INTO "incidents" VALUES('fraud','{"phase": "acting"}',1700000020.0);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','4');
CREATE TABLE releases (
            id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, created_at REAL NOT NULL,
            components TEXT NOT NULL, note TEXT NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL);
INSERT INTO "releases" VALUES(1,'fraud',1700000000.0,'{"model": "fraud:7"}','initial','cli','bad');
CREATE TABLE replicas (
            replica_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            started_at REAL NOT NULL, last_seen REAL NOT NULL, backend_pid INTEGER);
INSERT INTO "replicas" VALUES('mw-1','host-a',42,1700000000.0,1700000000.0,NULL);
CREATE TABLE rule_states (
            target TEXT NOT NULL, rule TEXT NOT NULL, series_key TEXT NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (target, rule, series_key));
INSERT INTO "rule_states" VALUES('fraud','p99','{"pod":"a"}','{"state":"firing"}');
CREATE TABLE steps (
            decision_id TEXT NOT NULL REFERENCES decisions (id), step_index INTEGER NOT NULL,
            actuator TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('started', 'succeeded', 'failed', 'skipped')),
            started_at REAL NOT NULL, finished_at REAL, message TEXT NOT NULL,
            attempts INTEGER NOT NULL, PRIMARY KEY (decision_id, step_index));
INSERT INTO "steps" VALUES('d1',0,'webhook','started',1700000023.0,NULL,'',2);
CREATE TABLE versions (
            target TEXT NOT NULL, version TEXT NOT NULL, first_seen REAL NOT NULL,
            last_seen REAL NOT NULL, seq INTEGER NOT NULL, bad INTEGER NOT NULL DEFAULT 0,
            bad_reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, version));
INSERT INTO "versions" VALUES('fraud','v1',1700000000.0,1700000000.0,1,0,'');
INSERT INTO "versions" VALUES('fraud','v2',1700000010.0,1700000010.0,2,1,'p99 900ms');
CREATE INDEX decisions_by_status ON decisions (status, created_at);
CREATE INDEX decisions_by_target ON decisions (target, created_at);
CREATE INDEX history_by_target ON history (target, id);
CREATE INDEX history_by_kind ON history (kind, id);
CREATE TRIGGER history_no_update BEFORE UPDATE ON history
            BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER history_no_delete BEFORE DELETE ON history
            BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE INDEX releases_by_target ON releases (target, id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('history',1);
INSERT INTO "sqlite_sequence" VALUES('releases',1);
INSERT INTO "sqlite_sequence" VALUES('alert_queue',1);
COMMIT;
