#!/usr/bin/env node
// Scriptable SMSC for Kittiwake's integration tests, built on node-smpp (npm `smpp`).
//
//   node tests/peers/smsc.js [PORT] [--config '{"system_id":"kittiwake","password":"secret",...}']
//
// Listens on 127.0.0.1:PORT (0 = any free port). Control channel: newline-delimited JSON
// commands on stdin, newline-delimited JSON events on stdout (first one: {"event":"listening","port":N}).
// The full protocol is documented in smsc.py's module docstring.
'use strict';

const readline = require('readline');
const smpp = require('smpp');

// ---------------------------------------------------------------- configuration

const config = {
  system_id: 'kittiwake',
  password: 'secret',
  receipts: 'delivered', // "none" | "delivered" | "undelivered" | "expired" | "rejected" | {dest: state, "*": state}
  receipt_delay_ms: 50,
  respect_registered_delivery: true, // only send receipts when registered_delivery asks for them
  resp_delay_ms: 0, // delay before each submit_sm_resp
  resp_id_format: 'hex', // "hex" | "decimal"
  receipt_id_format: null, // id in the receipt text; null = same as resp_id_format
  receipt_tlv_id_format: null, // id in the receipted_message_id TLV; null = same as resp_id_format
  receipt_tlvs: true, // add receipted_message_id / message_state TLVs to receipts
  receipt_date_seconds: false, // "YYMMDDhhmmss" instead of "YYMMDDhhmm"
  first_message_id: 0x1a2b3c,
  throttle_next: 0,
  queue_full_next: 0,
  fail_next: { count: 0, status: smpp.ESME_RSUBMITFAIL },
  hold_responses: false,
  drop_after: null,
};

// receipt state -> [stat word, message_state TLV value, err code]
const RECEIPT_STATES = {
  delivered: ['DELIVRD', 2, '000'],
  expired: ['EXPIRED', 3, '000'],
  undelivered: ['UNDELIV', 5, '001'],
  rejected: ['REJECTD', 8, '002'],
};

// ---------------------------------------------------------------- state

let nextMessageId = null; // numeric id of the next accepted submit_sm
let nextSessionId = 1;
const sessions = new Set(); // every open connection
const held = []; // submit_sm responses waiting for {"cmd":"release"}
const pendingReceipts = []; // receipts with no bound receiver yet

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// node-smpp replaces short_message / message_payload with decoded {udh, message} objects; keep the raw
// octets so events can report exactly what was on the wire.
const originalFilter = smpp.PDU.prototype._filter;
smpp.PDU.prototype._filter = function (func) {
  if (func === 'decode') {
    this._raw = { short_message: this.short_message, message_payload: this.message_payload };
  }
  return originalFilter.call(this, func);
};

// ---------------------------------------------------------------- helpers

function formatId(n, format) {
  return format === 'decimal' ? n.toString(10) : n.toString(16);
}

function smppDate(d, seconds) {
  const p = (v) => String(v).padStart(2, '0');
  const base = p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
  return seconds ? base + p(d.getUTCSeconds()) : base;
}

function canReceive(s) {
  return s.bound === 'transceiver' || s.bound === 'receiver';
}

function describe(s) {
  return { session: s.id, system_id: s.systemId || null };
}

// Decoded text of a short_message / message_payload value (node-smpp decodes data_coding 0/1 as
// unpacked GSM 03.38, 3 as Latin-1, 8 as UCS-2; others stay Buffers).
function textOf(value) {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) value = value.message;
  return typeof value === 'string' ? value : null;
}

function udhHexOf(raw, esmClass) {
  if (!(esmClass & 0x40) || !raw || !raw.length) return null;
  return raw.subarray(0, raw[0] + 1).toString('hex');
}

// ---------------------------------------------------------------- submit_sm

function submitEvent(s, pdu) {
  const raw = pdu._raw || {};
  const event = {
    event: 'submit_sm', ...describe(s), seq: pdu.sequence_number, source_addr: pdu.source_addr,
    destination_addr: pdu.destination_addr, data_coding: pdu.data_coding, esm_class: pdu.esm_class,
    registered_delivery: pdu.registered_delivery,
    short_message_hex: raw.short_message ? raw.short_message.toString('hex') : '',
    text: textOf(pdu.short_message), udh_hex: udhHexOf(raw.short_message, pdu.esm_class), tlvs: {},
  };
  for (const name of ['sar_msg_ref_num', 'sar_total_segments', 'sar_segment_seqnum', 'user_message_reference']) {
    if (pdu[name] !== undefined) event.tlvs[name] = pdu[name];
  }
  if (raw.message_payload) {
    event.tlvs.message_payload_hex = raw.message_payload.toString('hex');
    event.text = textOf(pdu.message_payload);
    event.udh_hex = event.udh_hex || udhHexOf(raw.message_payload, pdu.esm_class);
  }
  for (const key of Object.keys(pdu)) {
    if (/^\d+$/.test(key)) event.tlvs['0x' + Number(key).toString(16).padStart(4, '0')] = pdu[key].toString('hex');
  }
  return event;
}

function takeNext(name) {
  if (config[name] > 0) { config[name] -= 1; return true; }
  return false;
}

// Every submit_sm gives one "submit_sm" event (with its disposition) as it arrives, and one
// "submit_sm_resp" event when (if ever) the response is written.
function onSubmit(s, pdu) {
  const event = submitEvent(s, pdu);
  const decide = () => {
    if (s.bound !== 'transceiver' && s.bound !== 'transmitter') return smpp.ESME_RINVBNDSTS;
    if (config.fail_next.count > 0) { config.fail_next.count -= 1; return config.fail_next.status; }
    if (takeNext('throttle_next')) return smpp.ESME_RTHROTTLED;
    if (takeNext('queue_full_next')) return smpp.ESME_RMSGQFUL;
    return 0;
  };
  if (config.drop_after !== null && s.bound) {
    config.drop_after -= 1;
    emit({ ...event, disposition: 'dropped', command_status: null });
    if (config.drop_after <= 0) { config.drop_after = null; s.pause(); s.destroy(); }
    return;
  }
  const status = decide();
  if (status) {
    emit({ ...event, disposition: 'rejected', command_status: status });
    return reply(s, pdu, status, null);
  }
  const numericId = nextMessageId++;
  event.message_id = formatId(numericId, config.resp_id_format);
  const answer = () => {
    if (reply(s, pdu, 0, event.message_id)) scheduleReceipt(s, pdu, event, numericId, new Date());
  };
  emit({ ...event, disposition: config.hold_responses ? 'held' : 'answered', command_status: 0 });
  if (config.hold_responses) held.push(answer);
  else answer();
}

// Write a submit_sm_resp (after resp_delay_ms); returns false when the connection is already gone.
function reply(s, pdu, status, messageId) {
  if (s.closed) return false;
  const send = () => {
    const ok = s.send(pdu.response(status ? { command_status: status } : { message_id: messageId }));
    emit({ event: 'submit_sm_resp', ...describe(s), seq: pdu.sequence_number, command_status: status,
      message_id: messageId, sent: ok });
  };
  if (config.resp_delay_ms > 0) setTimeout(send, config.resp_delay_ms);
  else send();
  return true;
}

// ---------------------------------------------------------------- receipts

function receiptStateFor(destination) {
  const r = config.receipts;
  if (r && typeof r === 'object') return r[destination] || r['*'] || 'delivered';
  return r;
}

function scheduleReceipt(s, pdu, event, numericId, submitted) {
  const state = receiptStateFor(pdu.destination_addr);
  const requested = pdu.registered_delivery & 0x03;
  if (!RECEIPT_STATES[state]) return; // "none"
  if (config.respect_registered_delivery && (requested === 0 || (requested === 2 && state === 'delivered'))) return;
  setTimeout(() => {
    const [stat, messageState, err] = RECEIPT_STATES[state];
    const done = new Date();
    const receiptId = formatId(numericId, config.receipt_id_format || config.resp_id_format);
    const text = `id:${receiptId} sub:001 dlvrd:${state === 'delivered' ? '001' : '000'} ` +
      `submit date:${smppDate(submitted, config.receipt_date_seconds)} ` +
      `done date:${smppDate(done, config.receipt_date_seconds)} stat:${stat} err:${err} ` +
      `text:${(event.text || '').slice(0, 20).replace(/[^\x20-\x7e]/g, '?')}`;
    const options = {
      source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
      data_coding: 0, short_message: Buffer.from(text, 'ascii'),
    };
    if (config.receipt_tlvs) {
      options.receipted_message_id = formatId(numericId, config.receipt_tlv_id_format || config.resp_id_format);
      options.message_state = messageState;
    }
    const info = { kind: 'receipt', message_id: event.message_id, receipt_id: receiptId, stat, text };
    deliver(s, options, info);
  }, config.receipt_delay_ms);
}

// Send a deliver_sm to `preferred` if it can receive, else to any receiving session of the same
// system_id; queue it until the next receiver bind when there is none.
function deliver(preferred, options, info) {
  let target = preferred && canReceive(preferred) && !preferred.closed ? preferred : null;
  if (!target) target = [...sessions].find((x) => canReceive(x) && !x.closed) || null;
  if (!target) { pendingReceipts.push([options, info]); emit({ event: 'deliver_sm_queued', ...info }); return; }
  const pdu = new smpp.PDU('deliver_sm', options);
  target.send(pdu, (resp) => emit({
    event: 'deliver_sm_resp', ...describe(target), seq: resp.sequence_number, command_status: resp.command_status, ...info,
  }));
  emit({ event: 'deliver_sm_sent', ...describe(target), seq: pdu.sequence_number, ...info });
}

// ---------------------------------------------------------------- mobile-originated messages

function sendMo(cmd) {
  const dataCoding = cmd.data_coding || 0;
  const chars = Array.from(cmd.text || '');
  const parts = Math.max(1, cmd.parts || 1);
  const base = { source_addr: cmd.source_addr || '491700000001', destination_addr: cmd.destination_addr || '4900000',
    data_coding: dataCoding, esm_class: 0 };
  if (parts === 1) return deliver(null, { ...base, short_message: cmd.text || '' }, { kind: 'mo' });
  const ref = cmd.ref === undefined ? 1 : cmd.ref;
  const size = Math.ceil(chars.length / parts);
  for (let i = 1; i <= parts; i++) {
    // 8-bit reference (IEI 0x00) when it fits, else 16-bit (IEI 0x08)
    const udh = ref <= 0xff ? Buffer.from([5, 0x00, 3, ref, parts, i])
      : Buffer.from([6, 0x08, 4, ref >> 8, ref & 0xff, parts, i]);
    const message = chars.slice((i - 1) * size, i * size).join('');
    const copies = cmd.duplicate_part === i ? 2 : 1; // duplicate_part is the 1-based part number
    for (let c = 0; c < copies; c++) {
      deliver(null, { ...base, esm_class: 0x40, short_message: { udh, message } }, { kind: 'mo', part: i, parts, ref });
    }
  }
}

// ---------------------------------------------------------------- sessions

function onBind(s, pdu, mode) {
  let status = 0;
  if (pdu.system_id !== config.system_id) status = smpp.ESME_RBINDFAIL;
  else if (pdu.password !== config.password) status = smpp.ESME_RINVPASWD;
  else if (s.bound) status = smpp.ESME_RALYBND;
  if (status) {
    s.send(pdu.response({ command_status: status }));
    emit({ event: 'bind_failed', session: s.id, mode, system_id: pdu.system_id, command_status: status });
    return;
  }
  s.bound = mode;
  s.systemId = pdu.system_id;
  s.send(pdu.response({ system_id: 'KWSMSC' }));
  emit({ event: 'bound', ...describe(s), mode, password: pdu.password, interface_version: pdu.interface_version });
  if (canReceive(s)) pendingReceipts.splice(0).forEach(([options, info]) => deliver(s, options, info));
}

function onSession(s) {
  s.id = nextSessionId++;
  sessions.add(s);
  emit({ event: 'connected', session: s.id });
  for (const mode of ['transceiver', 'transmitter', 'receiver']) s.on('bind_' + mode, (pdu) => onBind(s, pdu, mode));
  s.on('submit_sm', (pdu) => onSubmit(s, pdu));
  s.on('enquire_link', (pdu) => { s.send(pdu.response()); emit({ event: 'enquire_link', ...describe(s), seq: pdu.sequence_number }); });
  s.on('enquire_link_resp', (pdu) => emit({ event: 'enquire_link_resp', ...describe(s), seq: pdu.sequence_number }));
  s.on('unbind', (pdu) => {
    s.send(pdu.response(), () => s.close());
    emit({ event: 'unbound', ...describe(s), initiator: 'esme' });
    s.bound = null;
  });
  s.on('unbind_resp', () => { emit({ event: 'unbound', ...describe(s), initiator: 'smsc' }); s.bound = null; s.close(); });
  s.on('generic_nack', (pdu) => emit({ event: 'generic_nack', ...describe(s), seq: pdu.sequence_number, command_status: pdu.command_status }));
  s.on('pdu', (pdu) => {
    const handled = /^(bind_|submit_sm$|enquire_link|unbind|deliver_sm_resp$|generic_nack$)/;
    if (pdu.isResponse() || handled.test(pdu.command)) return;
    // unknown command ids get generic_nack (node-smpp's pdu.response()); other known commands are not supported
    s.send(pdu.response({ command_status: smpp.ESME_RINVCMDID }));
    emit({ event: 'unsupported', ...describe(s), command: pdu.command, command_id: pdu.command_id });
  });
  s.on('error', (e) => { emit({ event: 'error', ...describe(s), message: String(e && e.message) }); s.destroy(); });
  s.on('close', () => { s.closed = true; sessions.delete(s); emit({ event: 'closed', ...describe(s) }); });
}

// ---------------------------------------------------------------- control channel

function applyConfig(cmd) {
  for (const [key, value] of Object.entries(cmd)) {
    if (key === 'cmd') continue;
    if (!(key in config)) { emit({ event: 'error', message: `unknown config key ${key}` }); continue; }
    config[key] = key === 'fail_next' ? { status: smpp.ESME_RSUBMITFAIL, ...value } : value;
    if (key === 'first_message_id') nextMessageId = value;
  }
}

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  for (const s of sessions) s.destroy();
  server.close();
  process.stdout.write(JSON.stringify({ event: 'stopped' }) + '\n', () => process.exit(0));
}

const COMMANDS = {
  config: (cmd) => { applyConfig(cmd); emit({ event: 'config_ok' }); },
  release: () => held.splice(0).forEach((answer) => answer()),
  drop: () => { for (const s of sessions) s.destroy(); },
  mo: sendMo,
  enquire_link: () => { for (const s of sessions) if (s.bound) s.enquire_link(); },
  unbind: () => { for (const s of sessions) if (s.bound) s.unbind(); },
  stop,
};

function onCommand(line) {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { emit({ event: 'error', message: 'bad json: ' + line }); return; }
  const handler = COMMANDS[cmd.cmd];
  if (!handler) { emit({ event: 'error', message: 'unknown cmd: ' + cmd.cmd }); return; }
  handler(cmd);
}

// ---------------------------------------------------------------- main

const args = process.argv.slice(2);
const configIndex = args.indexOf('--config');
if (configIndex >= 0) { applyConfig(JSON.parse(args[configIndex + 1])); args.splice(configIndex, 2); }
if (nextMessageId === null) nextMessageId = config.first_message_id;
const port = Number(args[0] || 0);

const server = smpp.createServer(onSession);
server.listen(port, '127.0.0.1', () => emit({ event: 'listening', port: server.address().port }));
readline.createInterface({ input: process.stdin }).on('line', onCommand).on('close', stop);
