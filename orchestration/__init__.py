"""Use cases, one package per capability (jobs, replies, payments, accounts); shared at the top: bootstrap
(the one composition root), uow, context, errors, tables, broker. Never imports api or workers."""
