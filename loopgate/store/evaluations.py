"""The repository of evaluations: one per (version, suite hash), the full record kept."""

from __future__ import annotations

from sqlalchemy import select

from loopgate.errors import NotFoundError
from loopgate.records import Evaluation, utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.session import Repository
from loopgate.store.tables import EvaluationRow, VersionRow


class EvaluationRepository(Repository):
    def add_evaluation(self, evaluation: Evaluation, actor: str = "loopgate") -> Evaluation:
        """Record an evaluation; recording the same (version, suite hash) twice keeps the first."""
        with self.db.tx() as s:
            existing = s.execute(select(EvaluationRow).where(
                EvaluationRow.version_id == evaluation.version,
                EvaluationRow.suite_sha256 == evaluation.suite_sha256)).scalar_one_or_none()
            if existing is not None:
                return Evaluation.model_validate(existing.record)
            if s.get(VersionRow, evaluation.version) is None:
                raise NotFoundError(f"no version {evaluation.version}")
            s.add(EvaluationRow(version_id=evaluation.version, suite=evaluation.suite,
                                suite_sha256=evaluation.suite_sha256, score=evaluation.score, n=evaluation.n,
                                record=evaluation.model_dump(mode="json"), created_at=utcnow()))
            ledger_mod.append(s, actor=actor, kind="evaluation", subject=evaluation.version, payload={
                "suite": evaluation.suite, "suite_sha256": evaluation.suite_sha256, "score": evaluation.score,
                "n": evaluation.n, "source": evaluation.source}, key=self.db.ledger_key)
        return evaluation

    def evaluations(self, version_id: str, suite_sha256: str | None = None) -> list[Evaluation]:
        with self.db.read() as s:
            q = select(EvaluationRow).where(EvaluationRow.version_id == version_id)
            if suite_sha256 is not None:
                q = q.where(EvaluationRow.suite_sha256 == suite_sha256)
            return [Evaluation.model_validate(r.record) for r in s.execute(q.order_by(EvaluationRow.id)).scalars()]

    def evaluation(self, version_id: str, suite_sha256: str) -> Evaluation | None:
        found = self.evaluations(version_id, suite_sha256)
        return found[0] if found else None
